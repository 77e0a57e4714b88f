"""A one-page PDF 1.4 writer (standard library only): text lines, filled rectangles and one RGB image.

Enough for the key-image summary without a plotting or PDF dependency: text uses the standard Helvetica
fonts (WinAnsi encoding; characters outside Latin-1 become "?"), the image is stored Flate-compressed, and
the page content stream is left uncompressed so that its text can be searched (tests, PACS indexers).
Coordinates are PDF points (1/72 inch) from the page's lower-left corner; the page is A4 (595 x 842 pt).
The output has no timestamps: the same page gives the same bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

#: A4 in points.
PAGE_WIDTH, PAGE_HEIGHT = 595, 842
Colour = tuple[float, float, float]
BLACK: Colour = (0.0, 0.0, 0.0)


def _escape(text: str) -> str:
    latin = text.encode("latin-1", errors="replace").decode("latin-1")
    return latin.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").replace("\r", " ").replace("\n", " ")


def _rgb(colour: Colour) -> str:
    return " ".join(f"{max(0.0, min(1.0, c)):.3f}" for c in colour)


@dataclass
class PdfPage:
    """Drawing operations of one page, rendered by :meth:`to_bytes`."""

    operations: list[str] = field(default_factory=list)
    image: NDArray[np.uint8] | None = None

    def text(
        self, x: float, y: float, text: str, size: float = 10.0, bold: bool = False, colour: Colour = BLACK
    ) -> None:
        """One line of text with its baseline starting at (x, y) pt, font size in pt."""
        font = "F2" if bold else "F1"
        self.operations.append(f"BT /{font} {size:g} Tf {_rgb(colour)} rg {x:.2f} {y:.2f} Td ({_escape(text)}) Tj ET")

    def rectangle(self, x: float, y: float, width: float, height: float, colour: Colour) -> None:
        """A filled rectangle (pt)."""
        self.operations.append(f"{_rgb(colour)} rg {x:.2f} {y:.2f} {width:.2f} {height:.2f} re f")

    def place_image(self, rgb: NDArray[np.uint8], x: float, y: float, width: float, height: float) -> None:
        """The page's (single) image: ``rgb`` (rows, columns, 3) drawn in the box (pt), first row on top."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("the image must be (rows, columns, 3)")
        self.image = np.ascontiguousarray(rgb, dtype=np.uint8)
        self.operations.append(f"q {width:.2f} 0 0 {height:.2f} {x:.2f} {y:.2f} cm /Im1 Do Q")

    def to_bytes(self) -> bytes:
        """The PDF file."""
        content = "\n".join(self.operations).encode("latin-1")
        objects: list[bytes] = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
                "/Resources << /Font << /F1 4 0 R /F2 5 0 R >> /XObject << /Im1 6 0 R >> >> /Contents 7 0 R >>"
            ).encode(),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        ]
        image = self.image if self.image is not None else np.full((1, 1, 3), 255, dtype=np.uint8)
        pixels = zlib.compress(image.tobytes(), 6)
        objects.append(
            (
                f"<< /Type /XObject /Subtype /Image /Width {image.shape[1]} /Height {image.shape[0]} "
                f"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode /Length {len(pixels)} >>\nstream\n"
            ).encode()
            + pixels
            + b"\nendstream"
        )
        objects.append(f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream")
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(len(out))
            out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
        xref = len(out)
        out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
        out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
        out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
        return bytes(out)
