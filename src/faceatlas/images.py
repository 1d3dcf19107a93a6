"""Turn any supported image input into an RGB uint8 array: decoding, EXIF orientation, size and decode-cost limits."""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
import numpy.typing as npt

from .errors import FaceAtlasError, ImageError, InvalidInputError
from .image_header import Header, pil_header, probe_header

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

ColorOrder = Literal["rgb", "bgr"]
ImageInput = Union[str, os.PathLike[str], bytes, bytearray, memoryview, npt.NDArray[Any], "PILImage", "LoadedImage"]

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
#: Decode budget per allowed pixel (bytes): an 8-bit RGB image at the pixel limit (decoded 3 + RGB result 3) fits.
DECODE_BYTES_PER_PIXEL = 6


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """Decoded pixels (RGB, uint8, HxWx3, C-contiguous) and where they came from."""

    rgb: npt.NDArray[np.uint8]
    source: str = "<array>"

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.rgb.shape[0])

    def bgr(self) -> npt.NDArray[np.uint8]:
        """The same pixels in BGR order (a new contiguous array)."""
        return np.ascontiguousarray(self.rgb[:, :, ::-1])


def load_image(
    src: ImageInput,
    *,
    color: ColorOrder | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decode_bytes: int | None = None,
) -> LoadedImage:
    """Load a path, bytes, numpy array (with its colour order) or PIL image as RGB uint8 pixels."""
    budget = max_pixels * DECODE_BYTES_PER_PIXEL if max_decode_bytes is None else max_decode_bytes
    if isinstance(src, LoadedImage):
        _check_pixels(src.width, src.height, max_pixels, src.source)
        return src
    if isinstance(src, np.ndarray):
        return LoadedImage(_from_array(src, color), "<array>")
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        return _decode(data, "<bytes>", max_pixels, max_bytes, budget)
    if isinstance(src, (str, os.PathLike)):
        path = Path(os.fspath(src))
        return _decode(_read_file(path, max_bytes), str(path), max_pixels, max_bytes, budget)
    if _is_pil(src):
        _check_pixels(src.width, src.height, max_pixels, "<PIL.Image>")
        _check_cost(pil_header(src.format or "PIL", src.mode, src.width, src.height), budget, "<PIL.Image>")
        return _from_pil(src, "<PIL.Image>", max_pixels)
    raise InvalidInputError(
        "invalid_input",
        f"unsupported image input type {type(src).__name__}; pass a path, bytes, numpy array or PIL image",
    )


def _read_file(path: Path, max_bytes: int) -> bytes:
    """Read an image file with clear errors for missing, unreadable, empty or oversized files."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError("image_not_found", f"no such file: {path}") from None
    except OSError as exc:
        raise ImageError("image_not_found", f"cannot access {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ImageError("image_unsupported", f"{path} is a directory, not an image")
    if size > max_bytes:
        raise ImageError("image_too_large", f"{path} is {size} bytes, above the {max_bytes}-byte limit")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError("image_not_found", f"cannot read {path}: {exc.strerror or exc}") from None


def _decode(data: bytes, source: str, max_pixels: int, max_bytes: int, max_decode_bytes: int) -> LoadedImage:
    """Decode encoded image bytes after checking the header's pixel count and estimated decode cost."""
    if len(data) == 0:
        raise ImageError("image_empty", f"{source}: the image has no bytes")
    if len(data) > max_bytes:
        raise ImageError("image_too_large", f"{source}: {len(data)} bytes, above the {max_bytes}-byte limit")
    head = probe_header(data)
    if head is not None:
        _check_pixels(head.width, head.height, max_pixels, source)
        _check_cost(head, max_decode_bytes, source)
        if head.opencv:
            rgb = _decode_opencv(data)
            if rgb is not None:
                return LoadedImage(rgb, source)
    return _decode_pil(data, source, max_pixels, max_decode_bytes)


def _decode_opencv(data: bytes) -> npt.NDArray[np.uint8] | None:
    """Decode with OpenCV (it applies EXIF orientation like Pillow's exif_transpose); None when it cannot."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
        return None
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _decode_pil(data: bytes, source: str, max_pixels: int, max_decode_bytes: int) -> LoadedImage:
    """Decode with Pillow: open lazily, check size and decode cost from its header, then load the first frame."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("image_unsupported", f"{source}: not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image_too_large", f"{source}: pixel count exceeds the decompression-bomb limit") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError("image_corrupt", f"{source}: cannot read image header ({exc})") from None
    width, height = img.size
    _check_pixels(width, height, max_pixels, source)
    # PNG and WebP read their frame count from the header; GIF would have to scan every frame, so it is not asked.
    frames = int(getattr(img, "n_frames", 1)) if img.format in ("PNG", "WEBP") else 1
    _check_cost(pil_header(img.format or "?", img.mode, width, height, frames), max_decode_bytes, source)
    return _from_pil(img, source, max_pixels)


def _from_pil(img: PILImage, source: str, max_pixels: int) -> LoadedImage:
    """Validate size, apply EXIF orientation and convert a PIL image to RGB pixels."""
    from PIL import Image, ImageOps

    width, height = img.size
    _check_pixels(width, height, max_pixels, source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            if img.mode != "RGB":
                img = _to_rgb(img)
            rgb = np.asarray(img, dtype=np.uint8)
    except FaceAtlasError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image_too_large", f"{source}: pixel count exceeds the decompression-bomb limit") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageError("image_corrupt", f"{source}: image data is truncated or damaged ({exc})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError("image_corrupt", f"{source}: decoded to an unusable shape {rgb.shape}")
    return LoadedImage(np.ascontiguousarray(rgb), source)


def _to_rgb(img: PILImage) -> PILImage:
    """Convert any PIL mode to RGB, compositing transparency onto white."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L"):
        arr16 = np.asarray(img)
        top = float(arr16.max()) or 1.0
        # A 65,536-entry table: the same values as the float formula below, without a float64 copy of the image.
        lut = (np.arange(65536, dtype=np.float64) / top * 255.0).astype(np.uint8)
        return Image.fromarray(lut[arr16.astype(np.uint16, copy=False)]).convert("RGB")
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr / top * 255.0).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def _check_pixels(width: int, height: int, max_pixels: int, source: str) -> None:
    """Refuse images whose pixel count is above the limit before decoding them."""
    if width <= 0 or height <= 0:
        raise ImageError("image_corrupt", f"{source}: invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            "image_too_large",
            f"{source}: {width}x{height} = {width * height} pixels, above the {max_pixels}-pixel limit",
        )


def _check_cost(head: Header, max_decode_bytes: int, source: str) -> None:
    """Refuse images whose estimated decode memory is above the budget (16-bit, alpha, palettes, animation)."""
    cost = head.decode_cost
    if cost > max_decode_bytes:
        raise ImageError(
            "image_too_large",
            f"{source}: decoding this {head.width}x{head.height} {head.describe()} image would need about "
            f"{cost // 1_000_000} MB, above the {max_decode_bytes // 1_000_000} MB decode limit",
        )


def _from_array(arr: npt.NDArray[Any], color: ColorOrder | None) -> npt.NDArray[np.uint8]:
    """Validate a numpy image and return it as contiguous RGB uint8."""
    if arr.dtype != np.uint8:
        raise ImageError("image_invalid", f"numpy images must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return np.ascontiguousarray(np.stack([arr] * 3, axis=-1))
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError("image_invalid", f"numpy images must be HxW, HxWx3 or HxWx4; got shape {arr.shape}")
    if color is None:
        raise FaceAtlasError(
            "color_order_required",
            "say the colour order of numpy images: color='rgb' (PIL, matplotlib) or color='bgr' (OpenCV)",
        )
    if color not in ("rgb", "bgr"):
        raise InvalidInputError("invalid_input", f"color must be 'rgb' or 'bgr', got {color!r}")
    px = arr[:, :, :3]
    if color == "bgr":
        px = px[:, :, ::-1]
    return np.ascontiguousarray(px)


def _is_pil(obj: Any) -> bool:
    """Tell whether ``obj`` is a PIL image without importing Pillow needlessly."""
    mod = type(obj).__module__
    if not mod.startswith("PIL."):
        return False
    from PIL import Image

    return isinstance(obj, Image.Image)
