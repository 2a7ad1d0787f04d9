"""A QR code as text: two modules a character with half blocks, for a
terminal screen (kiosk and console) that a phone or the exit scanner can
read when shown dark on light."""

from __future__ import annotations


def qr_lines(payload: str) -> list[str]:
    """The QR symbol of `payload` (error correction M, a 2-module quiet
    zone) as lines of "█", "▀", "▄" and spaces: a block is a dark module."""
    import qrcode  # lazy: the kiosk starts faster without it

    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(payload)
    code.make(fit=True)
    matrix = code.get_matrix()
    padded = [*matrix, [False] * len(matrix[0])] if len(matrix) % 2 else matrix
    return [
        "".join(
            "█" if top and bottom else "▀" if top else "▄" if bottom else " "
            for top, bottom in zip(upper, lower, strict=True)
        )
        for upper, lower in zip(padded[::2], padded[1::2], strict=True)
    ]
