"""Image loading: every input kind, EXIF orientation, and each bad-input case with its error code."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceatlas.errors import FaceAtlasError, ImageError, InvalidInputError
from faceatlas.images import load_image


def _jpeg(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a huge size (a decompression-bomb shape) with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture()
def rgb() -> np.ndarray:
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 0] = 200  # red
    img[:20, :, 2] = 100
    return img


def test_path_bytes_pil_and_array_agree(tmp_path: Path, rgb: np.ndarray) -> None:
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    (tmp_path / "a.png").write_bytes(png.getvalue())
    from_path = load_image(tmp_path / "a.png").rgb
    from_str = load_image(str(tmp_path / "a.png")).rgb
    from_bytes = load_image(png.getvalue()).rgb
    from_pil = load_image(Image.fromarray(rgb)).rgb
    from_rgb = load_image(rgb, color="rgb").rgb
    from_bgr = load_image(rgb[:, :, ::-1].copy(), color="bgr").rgb
    for other in (from_str, from_bytes, from_pil, from_rgb, from_bgr):
        np.testing.assert_array_equal(from_path, other)
    assert from_path.flags["C_CONTIGUOUS"] and from_path.dtype == np.uint8


def test_numpy_needs_colour_order(rgb: np.ndarray) -> None:
    with pytest.raises(FaceAtlasError) as err:
        load_image(rgb)
    assert err.value.code == "color_order_required"


def test_numpy_grey_and_rgba() -> None:
    grey = np.full((10, 12), 77, np.uint8)
    assert load_image(grey).rgb.shape == (10, 12, 3)
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 2] = 9
    assert load_image(rgba, color="rgb").rgb[0, 0].tolist() == [0, 0, 9]


@pytest.mark.parametrize(
    ("arr", "code"),
    [
        (np.zeros((10, 10, 3), np.float32), "image_invalid"),
        (np.zeros((10, 10, 2), np.uint8), "image_invalid"),
        (np.zeros((0, 10, 3), np.uint8), "image_invalid"),
        (np.zeros((2, 10, 10, 3), np.uint8), "image_invalid"),
    ],
)
def test_bad_arrays(arr: np.ndarray, code: str) -> None:
    with pytest.raises(ImageError) as err:
        load_image(arr, color="rgb")
    assert err.value.code == code


def test_wrong_type() -> None:
    with pytest.raises(InvalidInputError) as err:
        load_image(12345)  # type: ignore[arg-type]
    assert err.value.code == "invalid_input"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        load_image(tmp_path / "nope.jpg")
    assert err.value.code == "image_not_found"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        load_image(tmp_path)
    assert err.value.code == "image_unsupported"


def test_empty_file_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    for src in (tmp_path / "empty.jpg", b""):
        with pytest.raises(ImageError) as err:
            load_image(src)
        assert err.value.code == "image_empty"


def test_truncated_jpeg(rgb: np.ndarray) -> None:
    data = _jpeg(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    with pytest.raises(ImageError) as err:
        load_image(data[: len(data) // 2])
    assert err.value.code == "image_corrupt"


def test_garbage_bytes_unsupported() -> None:
    with pytest.raises(ImageError) as err:
        load_image(b"this is not an image at all" * 10)
    assert err.value.code == "image_unsupported"


def test_corrupt_body_with_valid_header(rgb: np.ndarray) -> None:
    data = bytearray(_jpeg(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    data[200:] = b"\xff" * (len(data) - 200)
    with pytest.raises(ImageError) as err:
        load_image(bytes(data))
    assert err.value.code == "image_corrupt"


def test_decompression_bomb_refused_before_decoding() -> None:
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(ImageError) as err:
        load_image(bomb)
    assert err.value.code == "image_too_large"


def test_pixel_limit_is_configurable(rgb: np.ndarray) -> None:
    data = _jpeg(rgb)
    assert load_image(data, max_pixels=40 * 60).width == 60
    with pytest.raises(ImageError) as err:
        load_image(data, max_pixels=40 * 60 - 1)
    assert err.value.code == "image_too_large"


def test_byte_limit(tmp_path: Path, rgb: np.ndarray) -> None:
    (tmp_path / "a.jpg").write_bytes(_jpeg(rgb))
    with pytest.raises(ImageError) as err:
        load_image(tmp_path / "a.jpg", max_bytes=10)
    assert err.value.code == "image_too_large"


def test_exif_orientation_is_applied() -> None:
    arr = np.zeros((30, 80, 3), np.uint8)
    arr[:, :10] = 255  # a white band on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img = load_image(_jpeg(arr, exif=exif.tobytes()))
    assert (img.height, img.width) == (80, 30)
    assert img.rgb[:10].mean() > 200  # the band is now on top
    plain = load_image(_jpeg(arr))
    assert (plain.height, plain.width) == (30, 80)


def test_palette_transparency_and_16bit() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    assert load_image(buf.getvalue()).rgb[0, 0].tolist() == [255, 255, 255]
    grey16 = Image.fromarray(np.full((8, 8), 4000, np.uint16))
    buf = io.BytesIO()
    grey16.save(buf, format="PNG")
    assert load_image(buf.getvalue()).rgb.shape == (8, 8, 3)


# -- OpenCV fast path, EXIF orientation, decode-cost bound (issue #13, issue #12 L6) -----------------------------


def _pillow_reference(data: bytes) -> np.ndarray:
    """What the Pillow path returns for these bytes (EXIF-transposed RGB, transparency composited on white)."""
    from PIL import ImageOps

    from faceatlas.images import _to_rgb

    img = Image.open(io.BytesIO(data))
    img.load()
    return np.asarray(_to_rgb(ImageOps.exif_transpose(img) or img))


def _png(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _zero_png(width: int, height: int, bit_depth: int, color_type: int, bands: int) -> bytes:
    """A valid all-zero PNG built row by row (tiny on disk, huge once decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + width * bands * bit_depth // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_opencv_decode_matches_pillow_on_lfw(lfw_dir: Path) -> None:
    from faceatlas.image_header import probe_header

    paths = sorted(lfw_dir.glob("A*/*_0001.jpg"))[:60]
    assert len(paths) == 60
    for path in paths:
        data = path.read_bytes()
        head = probe_header(data)
        assert head is not None and head.opencv, path
        np.testing.assert_array_equal(load_image(path).rgb, _pillow_reference(data), err_msg=str(path))


def test_opencv_decode_matches_pillow_on_other_layouts() -> None:
    from faceatlas.image_header import probe_header

    rng = np.random.default_rng(3)
    arr = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    grey = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    cases = {
        "progressive jpeg": (_jpeg(arr, progressive=True), True),
        "grey jpeg": (_jpeg(grey), True),
        "4:4:4 jpeg": (_jpeg(arr, subsampling=0), True),
        "rgb png": (_png(arr), True),
        "grey png": (_png(grey), True),
        "palette png": (_png(np.asarray(Image.fromarray(arr).quantize(16).convert("RGB"))), True),
        "palette png (P)": (_png_p(arr), True),
        "rgba png": (_png(np.dstack([arr, grey])), False),
        "cmyk jpeg": (_cmyk_jpeg(arr), False),
    }
    for name, (data, fast) in cases.items():
        head = probe_header(data)
        assert head is not None and head.opencv is fast, name
        np.testing.assert_array_equal(load_image(data).rgb, _pillow_reference(data), err_msg=name)


def _png_p(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).quantize(16).save(buf, format="PNG")
    return buf.getvalue()


def _cmyk_jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert("CMYK").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    arr = rng.integers(0, 255, (30, 52, 3), dtype=np.uint8)
    arr[:, :8] = 255  # an asymmetric marker, so every flip and rotation is distinguishable
    arr[:6, :] = 0
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _jpeg(arr, exif=exif.tobytes())
    got = load_image(data).rgb
    expect = _pillow_reference(data)
    assert got.shape == expect.shape == ((30, 52, 3) if orientation <= 4 else (52, 30, 3))
    np.testing.assert_array_equal(got, expect)


def test_truncated_jpeg_with_opencv_still_refused() -> None:
    data = _jpeg(np.random.default_rng(5).integers(0, 255, (120, 120, 3), dtype=np.uint8))
    with pytest.raises(ImageError) as err:
        load_image(data[:-300])
    assert err.value.code == "image_corrupt"


def test_sixteen_bit_png_bomb_refused_before_decoding() -> None:
    import time

    bomb = _zero_png(7000, 7000, 16, 0, 1)  # 49 MP: inside the pixel limit; ~1 GB and seconds to decode before
    assert len(bomb) < 200_000
    start = time.perf_counter()
    with pytest.raises(ImageError) as err:
        load_image(bomb)
    assert err.value.code == "image_too_large" and "decode limit" in err.value.message
    assert time.perf_counter() - start < 0.5
    rgba16 = _zero_png(6000, 6000, 16, 6, 4)
    with pytest.raises(ImageError) as err:
        load_image(rgba16)
    assert err.value.code == "image_too_large"


def test_decode_budget_is_configurable_and_small_16bit_still_loads() -> None:
    small = _zero_png(300, 200, 16, 0, 1)
    assert load_image(small).rgb.shape == (200, 300, 3)
    with pytest.raises(ImageError) as err:
        load_image(small, max_decode_bytes=300 * 200 * 5)
    assert err.value.code == "image_too_large"
    rgb = _jpeg(np.zeros((40, 60, 3), np.uint8))
    assert load_image(rgb, max_decode_bytes=40 * 60 * 6).width == 60
    with pytest.raises(ImageError):
        load_image(rgb, max_decode_bytes=40 * 60 * 6 - 1)


def test_sixteen_bit_grey_keeps_its_scaling() -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 7).astype(np.uint16)
    got = load_image(_png(ramp)).rgb
    expect = (ramp.astype(np.float64) / float(ramp.max()) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(got[:, :, 0], expect)
    np.testing.assert_array_equal(got[:, :, 2], expect)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_animated_images_decode_only_the_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (64, 48), (10 * i, 255 - 10 * i, 0)) for i in range(20)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=10)
    img = load_image(buf.getvalue())
    assert img.rgb.shape == (48, 64, 3)
    np.testing.assert_allclose(img.rgb[0, 0].astype(int), [0, 255, 0], atol=3)


def test_animated_png_cost_counts_the_canvas() -> None:
    from faceatlas.image_header import probe_header

    frames = [Image.new("RGB", (64, 48), (i, 0, 0)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    head = probe_header(buf.getvalue())
    assert head is not None and head.frames == 3 and not head.opencv
    single = probe_header(_png(np.zeros((48, 64, 3), np.uint8)))
    assert single is not None and head.decode_cost > single.decode_cost
