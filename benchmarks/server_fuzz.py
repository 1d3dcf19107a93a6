"""Fuzz the REST server with malformed requests and count 5xx answers and crashes (both must be 0).

Starts a real ``faceatlas serve`` on a free loopback port (fresh FACEATLAS_HOME, its first-run admin key) and sends
``--requests`` malformed or hostile requests from a seeded generator: truncated and corrupted images, odd formats,
wrong content types, huge declared sizes, decompression bombs, bad JSON and base64, random bytes, broken multipart,
odd paths, ids, query values, methods and auth headers, plus raw-socket cases (declared sizes far over the limit,
broken chunked encoding, garbage request lines), and the hardening classes of issue #12 (``HARDENING_CLASSES``:
deeply nested metadata in multipart and JSON, integers beyond 64 bits in paths and fields, path-like person ids,
Content-Length with Transfer-Encoding, unauthenticated 14 MiB uploads, wrong secrets for a real key id, forged
X-Forwarded-For, duplicate auth headers, headers sent a byte at a time, out-of-range thresholds, and PNG bombs inside
the pixel limit: 16-bit, palette, 16-bit grey+alpha, many-frame APNG). ``--cover`` (and the CI test) sends every
hardening class once before the random mix. Every answer is checked: no 5xx, every error a JSON
``{"error": {"code", "message", "request_id"}}`` (except the HTTP layer's own replies to unparsable HTTP), an
``x-request-id`` on every app response; afterwards the server must still be alive and healthy.

    python benchmarks/server_fuzz.py                      # 10,000 requests (a few minutes on 2 cores)
    python benchmarks/server_fuzz.py --requests 500 --seed 7

Results go to ``benchmarks/results/server_fuzz.json``. Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_data_dir, default_models_dir, default_out, environment, print_table, write_json  # noqa: E402

#: How the fuzzed server runs: no rate limit (one key sends everything), a 2 MB upload limit (cheap oversize cases),
#: a 10 s request timeout (bodies that never finish get their 408 before the client's 15 s read timeout).
SERVER_ARGS = ["--rate-limit", "0", "--max-upload-mb", "2", "--timeout", "10", "--header-timeout", "2",
               "--log-level", "warning"]

#: Hardening classes (issue #12); each is sent once first with ``cover=True``, then at random among the other cases.
HARDENING_CLASSES = [
    "multipart-deep-metadata", "json-deep-metadata", "big-int-face-id", "big-int-field", "path-like-id-body",
    "path-like-id-path", "bad-threshold", "cl-te", "unauth-big-upload", "wrong-secret", "xff-forged",
    "dup-auth-headers", "slow-headers", "png16-bomb", "palette-bomb", "gray-alpha16-bomb", "apng-frames",
    "compat-unauth-big-upload",
]
_RARE = {"slow-headers"}  # each takes the server's header timeout: sent at 1/20 of the others' rate

ENDPOINTS = [
    ("POST", "/v1/detect", "image"),
    ("POST", "/v1/verify", "pair"),
    ("POST", "/v1/collections/fuzz/enroll", "images"),
    ("POST", "/v1/collections/fuzz/identify", "image"),
    ("POST", "/v1/collections/fuzz/persons/p0/faces", "images"),
    ("POST", "/v1/collections/fuzz/persons", "fields"),
    ("POST", "/v1/collections", "fields"),
]
#: The CompreFace-compatible routes (issue #17) and the body each takes.
COMPAT_ENDPOINTS = [
    ("POST", "/api/v1/recognition/recognize", "file"), ("POST", "/api/v1/recognition/faces?subject=p1", "file"),
    ("POST", "/api/v1/recognition/faces/{id}/verify", "file"), ("POST", "/api/v1/detection/detect", "file"),
    ("POST", "/api/v1/verification/verify", "pair"), ("POST", "/api/v1/recognition/subjects", "subject"),
    ("PUT", "/api/v1/recognition/subjects/p1", "subject"), ("POST", "/api/v1/recognition/faces/delete", "ids"),
    ("GET", "/api/v1/recognition/faces", "none"), ("GET", "/api/v1/recognition/subjects/", "none"),
    ("DELETE", "/api/v1/recognition/faces/{id}", "none"), ("DELETE", "/api/v1/recognition/faces?subject=p9", "none"),
    ("DELETE", "/api/v1/recognition/subjects/p9", "none"),
]
GET_PATHS = [
    "/v1/health", "/v1/models", "/v1/whoami", "/v1/collections", "/v1/collections/fuzz", "/v1/collections/fuzz/persons",
    "/v1/collections/fuzz/persons/p0", "/v1/collections/fuzz/persons/p0/faces", "/v1/collections/fuzz/persons/p0/faces/1",
    "/", "/static/app.js", "/docs", "/openapi.json",
]


# -- seed images ----------------------------------------------------------------------------------------------------


def _pil_bytes(img: Any, fmt: str, **kw: Any) -> bytes:
    """Encode a PIL image."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, real_rows: int = 64) -> bytes:
    """A PNG declaring ``width``×``height`` whose IDAT is a tiny zlib stream of zeros (inflates enormously)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = zlib.compress(b"\x00" * min(width * 3 + 1, 1 << 20) * real_rows, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b"")


def _zeros_idat(row_bytes: int, rows: int) -> bytes:
    """A zlib stream of ``rows`` filter-0 scanlines of zeros (compressed as it goes: no huge buffer)."""
    comp = zlib.compressobj(6)
    row = b"\x00" * (row_bytes + 1)
    parts = [comp.compress(row) for _ in range(rows)]
    parts.append(comp.flush())
    return b"".join(parts)


def png_expanding(width: int, height: int, bit_depth: int, color_type: int) -> bytes:
    """A valid PNG of zeros that is small on the wire but large once decoded (16-bit, palette, grey+alpha)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row_bytes = (width * channels * bit_depth + 7) // 8
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))]
    if color_type == 3:
        chunks.append(_png_chunk(b"PLTE", bytes(range(256)) * 3))
    chunks.append(_png_chunk(b"IDAT", _zeros_idat(row_bytes, height)))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _png_chunk(b"IEND", b"")


def apng_many_frames(width: int, height: int, frames: int) -> bytes:
    """An animated PNG of ``frames`` full-size RGB frames (each frame's data shared: tiny file, big decode)."""
    data = _zeros_idat(width * 3, height)
    out = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),
           _png_chunk(b"acTL", struct.pack(">II", frames, 0))]
    seq = 0
    for i in range(frames):
        out.append(_png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, width, height, 0, 0, 1, 100, 0, 0)))
        seq += 1
        if i == 0:
            out.append(_png_chunk(b"IDAT", data))
        else:
            out.append(_png_chunk(b"fdAT", struct.pack(">I", seq) + data))
            seq += 1
    return b"\x89PNG\r\n\x1a\n" + b"".join(out) + _png_chunk(b"IEND", b"")


def bomb_images() -> dict[str, bytes]:
    """PNGs inside the default 36-megapixel limit that decode to 35-128 MB each (made once per run)."""
    return {
        "png16-bomb": png_expanding(4000, 4000, 16, 6),  # 16 Mpx RGBA 16-bit: 128 MB decoded
        "palette-bomb": png_expanding(5900, 6000, 8, 3),  # 35.4 Mpx palette: 106 MB as RGB
        "gray-alpha16-bomb": png_expanding(5000, 5000, 16, 4),  # 25 Mpx grey+alpha 16-bit: 100 MB
        "apng-frames": apng_many_frames(1500, 1500, 150),  # 150 frames of 6.75 MB each
    }


def jpeg_with_size(seed: bytes, width: int, height: int) -> bytes:
    """A JPEG whose SOF header is patched to claim another size."""
    data = bytearray(seed)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        i = data.find(marker)
        if i > 0:
            data[i + 5:i + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
            break
    return bytes(data)


def seed_images(data_dir: Path) -> dict[str, bytes]:
    """Valid images of many formats (LFW faces and generated ones) to mutate."""
    from PIL import Image

    lfw = data_dir / "lfw" / "images"
    seeds: dict[str, bytes] = {}
    for name, n in (("Tony_Blair", 2), ("Colin_Powell", 1), ("George_W_Bush", 3), ("Tony_Blair", 1)):
        p = lfw / name / f"{name}_{n:04d}.jpg"
        if p.exists():
            seeds[f"lfw-{name}-{n}"] = p.read_bytes()
    if not seeds:
        raise SystemExit(f"LFW not found under {lfw}")
    face = Image.open(io.BytesIO(next(iter(seeds.values())))).convert("RGB")
    seeds["png"] = _pil_bytes(face, "PNG")
    seeds["webp"] = _pil_bytes(face, "WEBP")
    seeds["bmp"] = _pil_bytes(face, "BMP")
    seeds["gif"] = _pil_bytes(face.convert("P"), "GIF")
    seeds["tiff"] = _pil_bytes(face, "TIFF")
    seeds["cmyk-jpeg"] = _pil_bytes(face.convert("CMYK"), "JPEG")
    seeds["gray-png"] = _pil_bytes(face.convert("L"), "PNG")
    seeds["rgba-png"] = _pil_bytes(face.convert("RGBA"), "PNG")
    seeds["i16-png"] = _pil_bytes(face.convert("I;16"), "PNG")
    seeds["1x1-png"] = _pil_bytes(Image.new("RGB", (1, 1)), "PNG")
    seeds["progressive-jpeg"] = _pil_bytes(face, "JPEG", progressive=True)
    seeds["ico"] = _pil_bytes(face.resize((64, 64)), "ICO")
    frames = [face, face.rotate(10)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    seeds["animated-gif"] = buf.getvalue()
    exif = face.getexif()
    exif[0x0112] = 6
    seeds["exif-rotated-jpeg"] = _pil_bytes(face, "JPEG", exif=exif.tobytes())
    seeds["big-png"] = _pil_bytes(face.resize((1600, 1600)), "PNG", compress_level=1)
    return seeds


# -- cases ----------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One request: over httpx (method, path, headers, body) or as raw bytes on a socket (``raw``)."""

    kind: str
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    raw: bytes | None = None
    protocol_level: bool = False  # the HTTP layer (not the app) may answer: its replies are not JSON
    slow: bool = False  # send ``raw`` a byte at a time (the server should cut it off)


class Generator:
    """Seeded generator of malformed requests."""

    def __init__(self, seed: int, images: dict[str, bytes], key: str, bombs: dict[str, bytes] | None = None) -> None:
        self.rng = random.Random(seed)
        self.images = images
        self.names = sorted(images)
        self.key = key
        self.bombs = bombs or {}

    # image mutations

    def image(self) -> tuple[str, bytes]:
        """A possibly broken image and the name of what was done to it."""
        r = self.rng
        name = r.choice(self.names)
        data = self.images[name]
        how = r.choice(["valid", "truncate", "truncate", "flip", "flip", "zero-run", "splice", "header-only", "bomb",
                        "jpeg-huge", "random", "empty", "dup-header"])
        if how == "truncate":
            data = data[:r.randrange(0, max(1, len(data)))]
        elif how == "flip":
            b = bytearray(data)
            for _ in range(r.randint(1, 40)):
                b[r.randrange(len(b))] = r.randrange(256)
            data = bytes(b)
        elif how == "zero-run":
            i = r.randrange(len(data))
            data = data[:i] + b"\x00" * r.randint(1, 4000) + data[i + r.randint(0, 4000):]
        elif how == "splice":
            other = self.images[r.choice(self.names)]
            data = data[:r.randrange(len(data))] + other[r.randrange(len(other)):]
        elif how == "header-only":
            data = data[:r.choice([2, 4, 8, 16, 64, 200])]
        elif how == "bomb":
            w, h = r.choice([(50_000, 50_000), (100_000, 1), (1, 100_000), (65_535, 65_535), (7_000, 7_000),
                             (2**31 - 1, 2**31 - 1), (0, 10)])
            data = png_bomb(w, h)
        elif how == "jpeg-huge":
            data = jpeg_with_size(self.images[self.names[0]], r.choice([0, 1, 60_000, 65_535]), r.choice([0, 60_000, 65_535]))
        elif how == "random":
            data = r.randbytes(r.randint(1, 5000))
        elif how == "empty":
            data = b""
        elif how == "dup-header":
            data = data[:20] + data
        return f"{name}/{how}", data

    def b64(self, data: bytes) -> str:
        """Base64 text of some bytes, sometimes broken or as a data: URL."""
        r = self.rng
        text = base64.b64encode(data).decode()
        how = r.choice(["plain", "plain", "dataurl", "urlsafe", "broken", "spaces", "unicode", "truncated"])
        if how == "dataurl":
            return "data:image/jpeg;base64," + text
        if how == "urlsafe":
            return base64.urlsafe_b64encode(data).decode().rstrip("=")
        if how == "broken":
            i = r.randrange(len(text) + 1)
            return text[:i] + r.choice(["%", "!", "\u00e9", "==", "\x00", "*"]) + text[i:]
        if how == "spaces":
            return " \n".join(text[i:i + 60] for i in range(0, len(text), 60))
        if how == "unicode":
            return "\u2603" * r.randint(1, 50)
        if how == "truncated":
            return text[:r.randrange(len(text) + 1)]
        return text

    def weird_text(self) -> Any:
        """An odd value for a text or number field."""
        r = self.rng
        return r.choice([
            "", " ", "x" * r.choice([257, 1025, 70_000]), "\x00\x01\x02", "../../etc/passwd", "\u202e\u0000evil",
            "NaN", "inf", "-1", "0", "1e309", "far=2", "far=0", "far=-1", "score=abc", "%00", "<script>", "\ud800",
            None, True, 12, -5, 3.5, float("1e308"), [], {}, [1, 2], {"a": {"b": [None]}}, "p0", "fuzz",
        ])

    # request builders

    def auth(self) -> dict[str, str]:
        """Mostly the valid key; sometimes missing or broken auth headers."""
        r = self.rng
        roll = r.random()
        if roll < 0.85:
            return {"Authorization": f"Bearer {self.key}"}
        return r.choice([
            {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer " + "a" * 5000}, {"Authorization": "Basic Zm9vOmJhcg=="},
            {"Authorization": f"Bearer {self.key[:-4]}zzzz"}, {"X-API-Key": "fak_0123456789ab_x"},
            {"Authorization": "Bearer fak_zzzzzzzzzzzz_" + "q" * 40}, {"X-API-Key": self.key, "Authorization": "Bearer nope"},
        ])

    def multipart(self, fields: list[tuple[str, str | None, bytes, str | None]],
                  boundary: str | None = None) -> tuple[bytes, str]:
        """Encode (name, filename, data, content type) parts, sometimes malformed."""
        r = self.rng
        boundary = boundary or f"fz{r.getrandbits(48):x}"
        out = io.BytesIO()
        for name, filename, data, ctype in fields:
            out.write(f"--{boundary}\r\n".encode())
            disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
            out.write(f"Content-Disposition: {disp}\r\n".encode("utf-8", "replace"))
            if ctype:
                out.write(f"Content-Type: {ctype}\r\n".encode())
            out.write(b"\r\n" + data + b"\r\n")
        ending = r.choice([f"--{boundary}--\r\n", f"--{boundary}--\r\n", f"--{boundary}\r\n", "", "--wrong--\r\n"])
        out.write(ending.encode())
        return out.getvalue(), boundary

    def case(self) -> Case:
        """One random malformed (or occasionally valid) request."""
        r = self.rng
        roll = r.random()
        if roll < 0.12:
            name = r.choice(HARDENING_CLASSES)
            if name in _RARE and r.random() > 0.05:
                name = "wrong-secret"
            return self.hardening_case(name)
        if roll < 0.18:
            return self.raw_case()
        if roll < 0.28:
            return self.get_case()
        if roll < 0.43:
            return CompatCases(self).case()
        method, path, shape = r.choice(ENDPOINTS)
        if r.random() < 0.05:
            method = r.choice(["PUT", "PATCH", "DELETE", "GET", "OPTIONS"])
        headers = self.auth()
        if r.random() < 0.1:
            headers["x-request-id"] = r.choice(["ok-id", "\u00e9\u00e9", "x" * 300, "a b", "../.."])
        if r.random() < 0.15:
            path += r.choice(["?k=0", "?k=abc", "?k=101", "?threshold=nan", "?threshold=far=5", "?templates=maybe",
                              "?templates=true", "?k=3&threshold=0.2", "?k=" + "9" * 40])
        style = r.choice(["multipart", "multipart", "json", "json", "raw", "wrong-type", "random"])
        if style == "multipart":
            body, ctype = self.multipart_body(shape)
        elif style == "json":
            body, ctype = self.json_body(shape)
        elif style == "raw":
            label, data = self.image()
            body, ctype = data, r.choice(["image/jpeg", "image/png", "application/octet-stream", "image/x-weird"])
        elif style == "wrong-type":
            label, data = self.image()
            body = data if r.random() < 0.5 else json.dumps({"image": base64.b64encode(data[:2000]).decode()}).encode()
            ctype = r.choice(["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data",
                              "multipart/mixed; boundary=x", "application/json; charset=utf-32", "", "image/",
                              "application/json" if r.random() < 0.5 else "text/json"])
        else:
            body = r.randbytes(r.randint(0, 20_000))
            ctype = r.choice(["application/json", "multipart/form-data; boundary=abc", "image/jpeg", "", "*/*"])
        if ctype:
            headers["Content-Type"] = ctype
        return Case(f"{style}:{shape}", method, path, headers, body)

    def multipart_body(self, shape: str) -> tuple[bytes, str]:
        """A multipart body for an endpoint shape, with broken parts."""
        r = self.rng
        parts: list[tuple[str, str | None, bytes, str | None]] = []
        names = {"image": ["image"], "pair": ["image_a", "image_b"], "images": ["images"] * r.randint(0, 12),
                 "fields": []}[shape]
        if r.random() < 0.15:
            names = [r.choice(["image", "images", "img", "image_a", "", "x" * 300, "\u00e9"])] * r.randint(1, 3)
        for n in names:
            _, data = self.image()
            if r.random() < 0.1:
                parts.append((n, None, self.b64(data).encode(), None))  # base64 in a text field
            else:
                parts.append((n, r.choice(["a.jpg", "", "../../x.png", "x" * 400, "\u00e9\u0000.jpg", None]), data,
                              r.choice(["image/jpeg", "application/octet-stream", None, "text/plain"])))
        for key in r.sample(["person", "name", "metadata", "threshold", "k", "templates", "collection"], r.randint(0, 4)):
            value = self.weird_text()
            parts.append((key, None, str(value).encode("utf-8", "replace"), None))
        if shape == "images" and r.random() < 0.7:
            parts.append(("person", None, r.choice([b"p0", b"p1", b"new person", b"x" * 300, b""]), None))
        body, boundary = self.multipart(parts)
        ctype = f"multipart/form-data; boundary={boundary}"
        if r.random() < 0.1:
            ctype = r.choice(["multipart/form-data", f"multipart/form-data; boundary={boundary}x",
                              'multipart/form-data; boundary=""', "multipart/form-data; boundary=" + "b" * 100])
        return body, ctype

    def json_body(self, shape: str) -> tuple[bytes, str]:
        """A JSON body for an endpoint shape, often malformed."""
        r = self.rng
        how = r.choice(["ok", "ok", "types", "truncated", "not-object", "deep", "huge-number", "dup-keys", "nan", "bad-utf8"])
        obj: dict[str, Any] = {}
        for n in {"image": ["image"], "pair": ["image_a", "image_b"], "images": ["images"], "fields": []}[shape]:
            if n == "images":
                obj[n] = [self.b64(self.image()[1]) for _ in range(r.randint(0, 4))]
            else:
                obj[n] = self.b64(self.image()[1])
        for key in r.sample(["person", "name", "metadata", "threshold", "k", "templates"], r.randint(0, 4)):
            obj[key] = self.weird_text()
        if shape == "fields":
            obj.setdefault(r.choice(["name", "person"]), self.weird_text())
        if how == "types":
            for key in list(obj):
                obj[key] = self.weird_text()
        text = json.dumps(obj, default=str)
        if how == "truncated":
            text = text[:r.randrange(len(text) + 1)]
        elif how == "not-object":
            text = r.choice(["[]", "null", "1", '"x"', "[{}]", "true"])
        elif how == "deep":
            depth = r.choice([100, 1000, 100_000])
            text = '{"image": ' + "[" * depth + "]" * depth + "}"
        elif how == "huge-number":
            text = '{"k": 1' + "0" * 5000 + ', "image": "AAAA"}'
        elif how == "dup-keys":
            text = '{"image": "AAAA", "image": 5, "image": ' + json.dumps(obj.get("image", "x")) + "}"
        elif how == "nan":
            text = '{"threshold": NaN, "k": Infinity, "image": "AAAA"}'
        body = text.encode("utf-8", "surrogatepass")
        if how == "bad-utf8":
            body = b'{"person": "\xff\xfe\xfd", "image": "\xc3"}'
        return body, r.choice(["application/json", "application/json", "application/json; charset=latin-1",
                               "application/problem+json"])

    def hardening_case(self, name: str) -> Case:
        """One request of a hardening class (see ``HARDENING_CLASSES``)."""
        r = self.rng
        auth = {"Authorization": f"Bearer {self.key}"}
        face = self.images[self.names[0]]
        kind = f"hard:{name}"
        if name == "multipart-deep-metadata":
            depth = r.choice([50, 990, 5000])
            meta = '{"a":' + "[" * depth + "]" * depth + "}"
            body, boundary = self.multipart([("person", None, b"deep", None), ("metadata", None, meta.encode(), None),
                                             ("images", "a.jpg", face, "image/jpeg")])
            return Case(kind, "POST", "/v1/collections/fuzz/enroll",
                        {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
        if name == "json-deep-metadata":
            depth = r.choice([20, 200, 900])
            text = '{"person": "deepj", "metadata": {"a": ' + "[" * depth + "]" * depth + "}}"
            return Case(kind, "POST", "/v1/collections/fuzz/persons", {**auth, "Content-Type": "application/json"},
                        text.encode())
        if name == "big-int-face-id":
            fid = r.choice([str(2**63), str(2**64 + 1), "1180591620717411303424", "9" * 40, str(-(2**63) - 1), "0"])
            return Case(kind, r.choice(["GET", "DELETE"]), f"/v1/collections/fuzz/persons/p0/faces/{fid}", auth)
        if name == "big-int-field":
            big = r.choice(["9" * 30, str(2**63), str(-(2**63) - 1), "1e400"])
            if r.random() < 0.5:
                return Case(kind, "GET", f"/v1/collections/fuzz/persons?limit={big}&offset={big}", auth)
            body = json.dumps({"image": base64.b64encode(face).decode()})[:-1] + f', "k": {big}}}'
            return Case(kind, "POST", "/v1/collections/fuzz/identify", {**auth, "Content-Type": "application/json"},
                        body.encode())
        if name == "path-like-id-body":
            person = r.choice(["jane/doe", "../../etc/passwd", "a/b", "jane%2Fdoe", "..", ".", "a\\b",
                               "Jose\u0301", "Jos\u00e9", "%252F", "/leading"])
            body, boundary = self.multipart([("person", None, person.encode(), None),
                                             ("images", "a.jpg", face, "image/jpeg")])
            return Case(kind, "POST", "/v1/collections/fuzz/enroll",
                        {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
        if name == "path-like-id-path":
            person = r.choice(["jane%2Fdoe", "jane%252Fdoe", "..%2F..%2Fetc%2Fpasswd", "a%2Fb", "%2E%2E", "Jose%CC%81",
                               "jane/doe", "%00"])
            tail = r.choice(["", "/faces", "/faces/1"])
            return Case(kind, r.choice(["GET", "DELETE"]), f"/v1/collections/fuzz/persons/{person}{tail}", auth)
        if name == "bad-threshold":
            value = r.choice(["-1.5", "2", "1e300", "far=0", "far=1.5", "far=-1", "score=-2", "-1e-320", "1.0000001"])
            if r.random() < 0.5:
                body, boundary = self.multipart([("threshold", None, value.encode(), None),
                                                 ("image_a", "a.jpg", face, "image/jpeg"),
                                                 ("image_b", "b.jpg", face, "image/jpeg")])
                return Case(kind, "POST", "/v1/verify",
                            {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
            return Case(kind, "POST", f"/v1/collections/fuzz/identify?threshold={value}",
                        {**auth, "Content-Type": "image/jpeg"}, face)
        if name == "cl-te":
            raw = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
                   "Content-Type: image/jpeg\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n").encode()
            return Case(kind, "POST", "/v1/detect", raw=raw, protocol_level=True)
        if name == "unauth-big-upload":
            head = (f"POST {r.choice(['/v1/detect', '/v1/collections/fuzz/enroll'])} HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Type: image/jpeg\r\nContent-Length: {14 * 1024 * 1024}\r\n\r\n").encode()
            return Case(kind, "POST", "/v1/detect", raw=head + r.randbytes(8192))
        if name == "compat-unauth-big-upload":  # the CompreFace routes check the key before the body too
            head = (f"POST {r.choice(COMPAT_ENDPOINTS)[1]} HTTP/1.1\r\nHost: x\r\nx-api-key: 00000000-0000-0000-0000-"
                    f"000000000002\r\nContent-Type: image/jpeg\r\nContent-Length: {14 * 1024 * 1024}\r\n\r\n").encode()
            return Case(kind, "POST", "/api/v1/recognition/recognize", raw=head + r.randbytes(8192))
        if name == "wrong-secret":
            key_id = self.key.split("_")[1]
            wrong = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for _ in range(43))
            return Case(kind, r.choice(["GET", "POST"]), r.choice(["/v1/whoami", "/v1/detect"]),
                        {"Authorization": f"Bearer fak_{key_id}_{wrong}", "Content-Type": "image/jpeg"},
                        face if r.random() < 0.5 else None)
        if name == "xff-forged":
            ip = f"{r.randrange(1, 255)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
            hdrs = {"X-Forwarded-For": ip, "X-Forwarded-Proto": "https", "Forwarded": f"for={ip}"}
            if r.random() < 0.5:
                hdrs.update(auth)
            return Case(kind, "GET", "/v1/whoami", hdrs)
        if name == "dup-auth-headers":
            raw = (f"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
                   f"Authorization: Bearer {self.key}\r\nX-API-Key: {self.key}\r\nConnection: close\r\n\r\n").encode()
            return Case(kind, "GET", "/v1/whoami", raw=raw)
        if name == "slow-headers":
            raw = (f"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\nX-Pad: "
                   + "p" * 400 + "\r\n\r\n").encode()
            return Case(kind, "GET", "/v1/whoami", raw=raw, protocol_level=True, slow=True)
        data = self.bombs.get(name) or png_expanding(64, 64, 16, 6)
        if r.random() < 0.5:
            return Case(kind, "POST", r.choice(["/v1/detect", "/v1/collections/fuzz/identify"]),
                        {**auth, "Content-Type": "image/png"}, data)
        body, boundary = self.multipart([("person", None, b"bomb", None), ("images", "b.png", data, "image/png")])
        return Case(kind, "POST", "/v1/collections/fuzz/enroll",
                    {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}, body)

    def get_case(self) -> Case:
        """GETs and DELETEs with odd paths, ids and queries."""
        r = self.rng
        path = r.choice(GET_PATHS)
        method = r.choice(["GET", "GET", "DELETE", "HEAD"])
        mutate = r.random()
        if mutate < 0.3:
            path = path.replace("p0", r.choice(["%00", "%2F", "..", "x" * 300, "%E9", "%FF%FE", "\u00e9", "%20", "p0%0Ax"]))
        elif mutate < 0.5:
            path = path.replace("/1", r.choice(["/-1", "/abc", "/99999999999999999999999", "/1.5", "/0x10", "/%00"]))
        elif mutate < 0.6:
            path = path.replace("fuzz", r.choice(["", "%2e%2e", "a" * 300, "other", "*"]))
        if r.random() < 0.3:
            path += r.choice(["?limit=0", "?limit=-5", "?limit=abc", "?offset=-1", "?templates=true", "?limit=1001",
                              "?offset=" + "9" * 30, "?%00=%00"])
        return Case(f"get:{method}", method, path, self.auth())

    def raw_case(self) -> Case:
        """Hand-written HTTP on a socket: huge declared sizes, broken chunking, garbage request lines."""
        r = self.rng
        auth = f"Authorization: Bearer {self.key}\r\n"
        how = r.choice(["huge-length", "huge-length", "lying-length", "bad-length", "bad-chunked", "garbage", "two-lengths",
                        "huge-header", "chunked-over-limit"])
        if how == "huge-length":
            size = r.choice([10**12, 2**63 - 1, 16 * 1024 * 1024, 10**30])
            raw = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: image/jpeg\r\n"
                   f"Content-Length: {size}\r\n\r\n").encode() + r.randbytes(1000)
            return Case("raw:huge-length", raw=raw, protocol_level=size > 2**62)
        if how == "lying-length":
            raw = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: image/jpeg\r\nContent-Length: 10\r\n"
                   "Connection: close\r\n\r\n").encode() + r.randbytes(500)
            return Case("raw:lying-length", raw=raw, protocol_level=True)
        if how == "bad-length":
            raw = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {r.choice(['-1', 'abc', '1e3', ' '])}\r\n"
                   "\r\n").encode()
            return Case("raw:bad-length", raw=raw, protocol_level=True)
        if how == "bad-chunked":
            raw = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
                   f"{r.choice(['zz', 'fffffffffffffffff', '-1', '5'])}\r\nhello world\r\n0\r\n\r\n").encode()
            return Case("raw:bad-chunked", raw=raw, protocol_level=True)
        if how == "chunked-over-limit":
            chunk = b"x" * 65536
            body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(40)) + b"0\r\n\r\n"
            raw = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
                   ).encode() + body
            return Case("raw:chunked-over-limit", raw=raw)
        if how == "two-lengths":
            raw = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nContent-Length: 7\r\n\r\nhello!!").encode()
            return Case("raw:two-lengths", raw=raw, protocol_level=True)
        if how == "huge-header":
            raw = (f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{auth}X-Big: {'h' * r.choice([10_000, 70_000])}\r\n\r\n").encode()
            return Case("raw:huge-header", raw=raw, protocol_level=True)
        raw = r.choice([b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", r.randbytes(200) + b"\r\n\r\n",
                        b"GET /v1/health\r\n\r\n", b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n\r\n"])
        return Case("raw:garbage", raw=raw, protocol_level=True)


class CompatCases:
    """Malformed requests to the CompreFace-compatible routes (``/api/v1/``, ``x-api-key`` auth)."""

    QUERY = {
        "limit": ["0", "1", "-1", "abc", "9" * 30, "", "1.5"],
        "prediction_count": ["1", "0", "101", "-3", "x", "9" * 25],
        "det_prob_threshold": ["0.8", "0", "1", "1.01", "-0.1", "nan", "inf", "abc", ""],
        "face_plugins": ["landmarks", "calculator,age,gender,pose,mask", ",,,", "x" * 400, "\u00e9", "age,,landmarks"],
        "status": ["true", "True", "false", "maybe", ""],
        "subject": ["p0", "", "x" * 300, "../..", "%00", "\u202e", "a/b"],
        "page": ["0", "-1", "9" * 30, "a"], "size": ["1", "0", "1001", "x"],
    }

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.rng = gen.rng

    def auth(self) -> dict[str, str]:
        """Mostly CompreFace's ``x-api-key`` with the valid key; sometimes a UUID-style, broken or missing key."""
        r = self.rng
        if r.random() < 0.85:
            return {"x-api-key": self.gen.key}
        return r.choice([{}, {"x-api-key": "00000000-0000-0000-0000-000000000002"}, {"x-api-key": ""},
                         {"x-api-key": self.gen.key[:-3] + "zzz"}, {"x-api-key": "k" * 5000}])

    def case(self) -> Case:
        """One request to a compat route: odd query values, broken images, odd ids and bodies."""
        r = self.rng
        method, path, shape = r.choice(COMPAT_ENDPOINTS)
        if "{id}" in path:
            path = path.replace("{id}", r.choice(["00000000-0000-0000-0000-000000000001", "1", "0", "-1", "abc",
                                                  "9" * 40, "ffffffff-ffff-ffff-ffff-ffffffffffff", "%00"]))
        if r.random() < 0.05:
            method = r.choice(["PUT", "PATCH", "DELETE", "GET", "OPTIONS", "HEAD"])
        query = "&".join(f"{k}={r.choice(v)}" for k, v in self.QUERY.items() if r.random() < 0.3)
        if query:
            path += ("&" if "?" in path else "?") + query
        headers = self.auth()
        body: bytes | None = None
        if shape in ("file", "pair"):
            names = ["file"] if shape == "file" else ["source_image", "target_image"]
            if r.random() < 0.6:
                parts = [(n, r.choice(["a.jpg", None, "../x.png"]), self.gen.image()[1], "image/jpeg") for n in names]
                if r.random() < 0.2:
                    parts = parts[:r.randint(0, len(parts))] + [(r.choice(["img", "image", ""]), "a.jpg", b"x", None)]
                body, boundary = self.gen.multipart(parts)
                headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
            else:
                obj: Any = {n: self.gen.b64(self.gen.image()[1]) for n in names}
                if r.random() < 0.2:
                    obj = r.choice([[], None, {"file": 5}, {"file": ["a", "b"]}, "x"])
                body, headers["Content-Type"] = json.dumps(obj).encode(), "application/json"
        elif shape == "subject":
            body = json.dumps(r.choice([{"subject": "p1"}, {"subject": self.gen.weird_text()}, {}, [], "x"]),
                              default=str).encode()
            headers["Content-Type"] = r.choice(["application/json", "text/plain", ""])
        elif shape == "ids":
            body = r.choice([json.dumps(["00000000-0000-0000-0000-000000000001", "x"]).encode(), b"[]", b"{",
                             json.dumps(["1"] * 2000).encode(), json.dumps([1, None, {}]).encode(), b"null"])
            headers["Content-Type"] = "application/json"
        return Case(f"compat:{shape}", method, path, headers, body)


# -- sending and checking ---------------------------------------------------------------------------------------------


@dataclass
class Stats:
    """What came back."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    bad_shape: list[dict[str, Any]] = field(default_factory=list)
    missing_request_id: int = 0
    transport_errors: Counter[str] = field(default_factory=Counter)
    client_refused: Counter[str] = field(default_factory=Counter)
    kind_status: Counter[str] = field(default_factory=Counter)  # hardening classes: "hard:<class> <status>"
    slow_seconds: list[float] = field(default_factory=list)  # how long slow-header connections lasted
    slow_not_cut: int = 0  # slow-header connections the server answered instead of cutting off
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> dict[str, Any]:
        """Plain-JSON summary."""
        return {
            "sent": self.sent,
            "status_counts": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_codes": dict(self.codes.most_common()),
            "case_kinds": dict(self.kinds.most_common()),
            "http_5xx": sum(v for k, v in self.statuses.items() if k >= 500),
            "non_json_errors": len(self.bad_shape),
            "missing_request_id": self.missing_request_id,
            "transport_errors": dict(self.transport_errors),
            "client_refused_to_send": dict(self.client_refused),
            "hardening": {k: v for k, v in sorted(self.kind_status.items()) if k.startswith("hard:")},
            "slow_header_seconds_max": max(self.slow_seconds, default=None),
            "slow_header_not_cut_off": self.slow_not_cut,
            "examples_5xx": self.server_errors[:20],
            "examples_bad_shape": self.bad_shape[:20],
        }


def _check(stats: Stats, case: Case, status: int, headers: dict[str, str], body: bytes) -> None:
    """Record one answer."""
    with stats.lock:
        stats.sent += 1
        stats.statuses[status] += 1
        stats.kinds[case.kind] += 1
        if case.kind.startswith("hard:"):
            stats.kind_status[f"{case.kind} {status}"] += 1
        info = {"kind": case.kind, "method": case.method, "path": case.path[:120], "status": status,
                "body": body[:300].decode("utf-8", "replace")}
        if status >= 500:
            stats.server_errors.append(info)
        app_answer = "x-request-id" in headers
        if status >= 400 and case.method != "HEAD":  # HEAD answers carry no body by definition
            try:
                err = json.loads(body)["error"]
                assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["request_id"]
                stats.codes[err["code"]] += 1
            except Exception:
                if not case.protocol_level or app_answer:
                    stats.bad_shape.append(info)
                else:
                    stats.codes["<http-layer>"] += 1
        if not app_answer and not case.protocol_level and case.method != "HEAD":
            stats.missing_request_id += 1


def _raw_send(host: str, port: int, raw: bytes, timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one response; status 0 when the server closed without answering."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(raw)
        except OSError:
            pass  # the server may close early (e.g. after a 413); still read what it said
        chunks = []
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    break
                chunks.append(got)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        except OSError:
            pass
    data = b"".join(chunks)
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return -1, {}, data
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def _slow_send(host: str, port: int, raw: bytes, every: float = 0.25, limit: float = 60.0) -> tuple[int, float]:
    """Send ``raw`` one byte per ``every`` seconds; (status or 0 when cut off, seconds until the server reacted)."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=every) as s:
        for i in range(len(raw)):
            try:
                s.send(raw[i:i + 1])
                got = s.recv(4096)
            except TimeoutError:
                if time.monotonic() - started > limit:
                    return -2, time.monotonic() - started
                continue
            except OSError:
                return 0, time.monotonic() - started
            if not got:
                return 0, time.monotonic() - started
            try:
                return int(got.split(b" ", 2)[1]), time.monotonic() - started
            except (IndexError, ValueError):
                return -1, time.monotonic() - started
    return -3, time.monotonic() - started  # the whole head went through slowly without being cut off


def _complete(data: bytes) -> bool:
    """Whether a raw response with Content-Length has fully arrived."""
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line.lower().startswith("content-length:"):
            try:
                return len(body) >= int(line.split(":", 1)[1])
            except ValueError:
                return True
    return False


def run_fuzz(url: str, key: str, requests: int, seed: int, images: dict[str, bytes], threads: int = 4,
             progress: Callable[[int], None] | None = None, *, cover: bool = False,
             bombs: dict[str, bytes] | None = None) -> Stats:
    """Send ``requests`` generated requests from ``threads`` client threads (``cover``: every hardening class first)."""
    import httpx

    host, port = url.split("//", 1)[1].split(":")
    stats = Stats()
    counter = iter(range(requests))
    counter_lock = threading.Lock()
    first = list(HARDENING_CLASSES) if cover else []

    def worker(wid: int) -> None:
        gen = Generator(seed * 1000 + wid, images, key, bombs)
        with httpx.Client(base_url=url, timeout=60.0) as client:
            while True:
                with counter_lock:
                    n = next(counter, None)
                    name = first.pop(0) if first else None
                if n is None:
                    return
                case = gen.hardening_case(name) if name else gen.case()
                try:
                    if case.slow and case.raw is not None:
                        status, took = _slow_send(host, int(port), case.raw)
                        with stats.lock:
                            stats.sent += 1
                            stats.kinds[case.kind] += 1
                            stats.kind_status[f"{case.kind} {status}"] += 1
                            stats.slow_seconds.append(round(took, 2))
                            if status != 0:
                                stats.slow_not_cut += 1
                        continue
                    if case.raw is not None:
                        status, headers, body = _raw_send(host, int(port), case.raw)
                        if status <= 0:
                            with stats.lock:
                                stats.sent += 1
                                stats.kinds[case.kind] += 1
                                stats.kind_status[f"{case.kind} closed"] += 1
                                stats.transport_errors[f"{case.kind}: no answer"] += 1
                            continue
                    else:
                        headers_out = {k: v.encode("utf-8", "surrogatepass") for k, v in case.headers.items()}
                        resp = client.request(case.method, case.path, headers=headers_out, content=case.body)
                        status, headers, body = resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content
                except (httpx.HTTPError, OSError) as exc:
                    with stats.lock:
                        stats.sent += 1
                        stats.kinds[case.kind] += 1
                        stats.transport_errors[f"{case.kind}: {type(exc).__name__}"] += 1
                    continue
                except Exception as exc:  # the client library refused to send this case: not the server's doing
                    with stats.lock:
                        stats.client_refused[f"{case.kind}: {type(exc).__name__}"] += 1
                    continue
                _check(stats, case, status, headers, body)
                if progress and n % 500 == 0:
                    progress(n)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return stats


def main() -> None:
    """Start a server, fuzz it, report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=4, help="client threads")
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--cover", action=argparse.BooleanOptionalAction, default=True,
                    help="send every hardening class once before the random mix")
    ap.add_argument("--out", type=Path, default=default_out("server_fuzz"))
    args = ap.parse_args()

    os.environ.setdefault("FACEATLAS_MODELS", str(default_models_dir()))
    os.environ.setdefault("FACEATLAS_OFFLINE", "1")
    from faceatlas.server.launcher import ServerProcess

    images = seed_images(default_data_dir())
    bombs = bomb_images()
    with tempfile.TemporaryDirectory(prefix="faceatlas-fuzz-") as tmp:
        server = ServerProcess(Path(tmp) / "home", SERVER_ARGS + ["--workers", str(args.workers)])
        server.start()
        try:
            assert server.admin_key
            prime(server.url, server.admin_key, images)
            started = time.perf_counter()
            stats = run_fuzz(server.url, server.admin_key, args.requests, args.seed, images, args.threads,
                             progress=lambda n: print(f"  {n} requests…", file=sys.stderr, flush=True),
                             cover=args.cover, bombs=bombs)
            seconds = time.perf_counter() - started
            alive = server.alive()
            healthy = server._healthy()
            log_text = server.stderr_path.read_text(errors="replace")
        finally:
            code = server.stop()
    summary = stats.summary()
    summary.update({
        "seconds": round(seconds, 1), "requests_per_s": round(stats.sent / seconds, 1),
        "server_alive_after": alive, "server_healthy_after": healthy, "server_exit_code": code,
        "tracebacks_in_server_log": log_text.count("Traceback"),
        "unhandled_errors_logged": log_text.count("unhandled error"),
        "first_traceback": _last_lines(log_text[log_text.find("Traceback"):], 12) if "Traceback" in log_text else None,
    })
    rows = [[k, v] for k, v in summary["status_counts"].items()]
    print_table(["status", "count"], rows, title=f"faceatlas server fuzz: {stats.sent} requests in {seconds:.0f} s")
    print_table(["error code", "count"], [[k, v] for k, v in summary["error_codes"].items()])
    print(f"\n5xx: {summary['http_5xx']}   non-JSON errors from the app: {summary['non_json_errors']}   "
          f"missing x-request-id: {summary['missing_request_id']}   transport errors: {sum(stats.transport_errors.values())}\n"
          f"server alive after: {alive}, healthy: {healthy}, tracebacks in its log: {summary['tracebacks_in_server_log']}")
    write_json(args.out, {"benchmark": "server_fuzz", "args": vars(args) | {"out": str(args.out)}, "environment": environment(),
                          "results": summary})
    print_table(["hardening class and answer", "count"], [[k, v] for k, v in summary["hardening"].items()])
    bad = (summary["http_5xx"] or summary["non_json_errors"] or not alive or not healthy
           or summary["slow_header_not_cut_off"])
    raise SystemExit(1 if bad else 0)


def _last_lines(text: str, n: int) -> str:
    """The last ``n`` lines of a traceback (where the error is), stopping at the next log record."""
    lines = text.splitlines()
    end = next((i for i, ln in enumerate(lines[1:], 1) if not ln.startswith((" ", "Traceback")) and ":" in ln
                and not ln.startswith(("File", "During"))), len(lines) - 1)
    return "\n".join(lines[max(0, end - n):end + 1])


def prime(url: str, key: str, images: dict[str, bytes]) -> None:
    """Create the collection ``fuzz`` with person ``p0`` so that deeper code paths are reached too."""
    import httpx

    first = next(v for k, v in images.items() if k.startswith("lfw-Tony_Blair-2"))
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        r = c.post("/v1/collections/fuzz/enroll", data={"person": "p0"}, files={"images": ("a.jpg", first, "image/jpeg")})
        r.raise_for_status()
        r = c.post("/api/v1/recognition/faces?subject=p0", files={"file": ("a.jpg", first, "image/jpeg")})
        r.raise_for_status()


if __name__ == "__main__":
    main()
