"""Read an image's size, samples and frame count from its header alone, to bound decoding before it starts."""

from __future__ import annotations

import struct
from dataclasses import dataclass

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_BANDS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Bytes per pixel Pillow holds for a decoded image of each mode (multi-band modes use 4-byte pixels).
_PIL_STORAGE = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


@dataclass(frozen=True)
class Header:
    """What a header says about the first frame, and the memory decoding it to RGB is estimated to need."""

    format: str
    width: int
    height: int
    bands: int  # samples per pixel as stored (palette images: 1, the index)
    bits: int  # bits per sample
    palette: bool = False
    alpha: bool = False
    frames: int = 1
    opencv: bool = False  # cv2.imdecode gives exactly the pixels the Pillow path would
    bytes_per_pixel: float = 0.0  # estimated decode working set per pixel, RGB result included

    @property
    def decode_cost(self) -> int:
        """Estimated peak bytes to decode the first frame and convert it to RGB uint8."""
        return int(self.width * self.height * self.bytes_per_pixel)

    def describe(self) -> str:
        """A short human description such as 'PNG 16-bit 4-band'."""
        kind = "palette" if self.palette else f"{self.bands}-band"
        anim = f", {self.frames} frames" if self.frames > 1 else ""
        return f"{self.format} {self.bits}-bit {kind}{', alpha' if self.alpha else ''}{anim}"


def probe_header(data: bytes) -> Header | None:
    """The header of a JPEG or PNG (None for other formats or a header too damaged to read)."""
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(_PNG_SIGNATURE):
        return _png(data)
    return None


def _cost(decoded: float, converted: bool, alpha: bool = False, sixteen: bool = False) -> float:
    """Per-pixel peak bytes (measured with /usr/bin/time): decoded buffer, conversion copies, the RGB result."""
    extra = (4 if converted else 0) + (12 if alpha else 0) + (decoded + 2 if sixteen else 0)
    return decoded + 3 + extra


def _jpeg(data: bytes) -> Header | None:
    """Walk JPEG markers up to the first start-of-frame segment."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # scan or end before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            if i + 10 > n or length < 8:
                return None
            bits = data[i + 4]
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            comps = data[i + 9]
            # OpenCV and Pillow agree on 8-bit grey and YCbCr baseline/progressive JPEGs that end properly (Pillow
            # reports truncation, OpenCV would fill the rest with grey).
            simple = bits == 8 and comps in (1, 3) and marker in (0xC0, 0xC1, 0xC2)
            simple = simple and data.rstrip(b"\x00").endswith(b"\xff\xd9")
            decoded = 3.0 if comps in (1, 3) else 4.0
            return Header("JPEG", width, height, comps, bits, opencv=simple,
                          bytes_per_pixel=_cost(decoded, comps not in (1, 3), sixteen=bits > 8))
        i += 2 + length
    return None


def _png(data: bytes) -> Header | None:
    """Read IHDR and the chunks before the first IDAT (tRNS, acTL, eXIf)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, bits, color = struct.unpack(">IIBB", data[16:26])
    if color not in _PNG_BANDS:
        return None
    alpha = color in (4, 6)
    frames, exif = 1, False
    i = 33
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        if kind == b"IDAT":
            break
        if kind == b"tRNS":
            alpha = True
        elif kind == b"acTL" and i + 12 <= len(data):
            frames = max(1, struct.unpack(">I", data[i + 8 : i + 12])[0])
        elif kind == b"eXIf":
            exif = True
        i += 12 + length
    palette = color == 3
    per_sample = 2 if bits == 16 else 1
    bands = _PNG_BANDS[color]
    plain = not alpha and not exif and frames == 1
    opencv = plain and (palette or (bits == 8 and color in (0, 2)))
    if opencv:  # OpenCV decodes (palette expanded) straight to 3-byte BGR
        return Header("PNG", width, height, bands, bits, palette, alpha, frames, True, _cost(3.0, False))
    # Pillow keeps 1- and 2-byte grey and palettes as such, every other mode as 4-byte pixels
    decoded = float(per_sample) if bands == 1 and not palette else (1.0 if palette else 4.0)
    if frames > 1:  # Pillow composites the first frame onto a full canvas
        decoded *= 2
    cost = _cost(decoded, palette or bands != 3, alpha, sixteen=bits == 16 and bands == 1)
    return Header("PNG", width, height, bands, bits, palette, alpha, frames, False, cost)


def pil_header(fmt: str, mode: str, width: int, height: int, frames: int = 1) -> Header:
    """The decode-cost header of an image Pillow opened (mode and size come from its header)."""
    decoded = float(_PIL_STORAGE.get(mode, 4))
    if frames > 1:
        decoded *= 2
    bits = 16 if mode.startswith("I;16") else (32 if mode in ("I", "F") else 8)
    bands = len(mode) if mode in ("RGB", "RGBA", "CMYK", "LA", "PA") else 1
    alpha = "A" in mode or mode == "P"  # a palette may carry transparency: assume the costly path
    cost = _cost(decoded, mode != "RGB", alpha, sixteen=bits == 16) + (8 if mode in ("I", "F") else 0)
    return Header(fmt, width, height, bands, bits, mode in ("P", "PA"), alpha, frames, bytes_per_pixel=cost)
