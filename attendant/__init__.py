"""The attendant console (Textual): `lotkeeper attendant`."""
