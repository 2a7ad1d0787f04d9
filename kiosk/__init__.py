"""The touchscreen kiosk (Textual): `lotkeeper kiosk`."""
