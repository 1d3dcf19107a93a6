"""Request bodies: multipart uploads, JSON with base64 (or data: URL) images, or one raw image body."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from .errors import ApiError

_DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]*)*;base64,", re.IGNORECASE)
_B64_CHARS = re.compile(rb"^[A-Za-z0-9+/_-]*={0,2}$")
_LABEL_UNSAFE = re.compile(r"[^\w .()+-]")
_BIG_JSON = 256 * 1024
_MAX_METADATA_DEPTH = 16


@dataclass(frozen=True)
class Upload:
    """One image of a request: a printable label (sanitised file name or position) and its encoded bytes."""

    label: str
    data: bytes


@dataclass
class Body:
    """A parsed request body: images per field and the plain (non-image) fields."""

    images: dict[str, list[Upload]] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def image(self, name: str) -> Upload:
        """The single required image of a field."""
        items = self.images.get(name) or []
        if not items:
            raise ApiError("invalid_request", f"the image field {name!r} is required")
        if len(items) > 1:
            raise ApiError("invalid_request", f"the field {name!r} takes one image, got {len(items)}")
        return items[0]


def decode_base64_image(text: str, what: str) -> bytes:
    """Bytes of a base64 (standard or URL-safe) image, optionally as a ``data:`` URL."""
    s = _DATA_URL.sub("", text.strip(), count=1)
    raw = "".join(s.split()).encode("ascii", "replace")
    if not raw or not _B64_CHARS.match(raw):
        raise ApiError("invalid_base64", f"{what} is not base64 image data")
    raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("invalid_base64", f"{what} is not valid base64") from None


def _label(filename: str | None, field_name: str, index: int) -> str:
    """A safe short label for an uploaded image."""
    if filename:
        name = _LABEL_UNSAFE.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1])[:80]
        if name.strip("._ "):
            return name
    return f"{field_name}[{index}]"


async def parse_body(request: Request, image_fields: Mapping[str, bool], *, max_images: int,
                     raw_field: str | None = None) -> Body:
    """Parse the body; ``image_fields`` maps each image field to whether it takes several images."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "multipart/form-data":
        body = await _multipart(request, image_fields, max_images)
    elif ctype == "application/json" or ctype.endswith("+json"):
        raw = await request.body()
        body = await run_in_threadpool(_json_body, raw, image_fields) if len(raw) > _BIG_JSON else \
            _json_body(raw, image_fields)
    elif raw_field is not None and (ctype.startswith("image/") or ctype == "application/octet-stream"):
        data = await request.body()
        body = Body(images={raw_field: [Upload("body", data)]}, fields=dict(request.query_params))
    else:
        shown = ctype or "none"
        kinds = "multipart/form-data or application/json" + (" or an image/* body" if raw_field else "")
        raise ApiError("unsupported_media_type", f"content type {shown[:80]!r} is not accepted; send {kinds}")
    total = sum(len(v) for v in body.images.values())
    if total > max_images:
        raise ApiError("too_many_images", f"{total} images in one request; the limit is {max_images}")
    for name, value in request.query_params.items():
        body.fields.setdefault(name, value)
    return body


async def _multipart(request: Request, image_fields: Mapping[str, bool], max_images: int) -> Body:
    """Parse a multipart form: files (or base64 text) for image fields, text for the rest."""
    try:
        form = await request.form(max_files=max_images + 1, max_fields=64)
    except Exception as exc:  # noqa: BLE001 - the multipart parser raises several types for bad input
        raise ApiError("invalid_request", f"the multipart body cannot be parsed ({_short(exc)})") from None
    body = Body()
    try:
        for key, value in form.multi_items():
            if key in image_fields:
                items = body.images.setdefault(key, [])
                if isinstance(value, UploadFile):
                    data = await value.read()
                    items.append(Upload(_label(value.filename, key, len(items)), data))
                else:
                    items.append(Upload(f"{key}[{len(items)}]", decode_base64_image(value, f"field {key!r}")))
            elif isinstance(value, UploadFile):
                raise ApiError("invalid_request", f"field {key[:64]!r} does not take a file")
            else:
                body.fields[key] = value
    finally:
        await form.close()
    return body


def _json_body(raw: bytes, image_fields: Mapping[str, bool]) -> Body:
    """Parse a JSON object body: base64 strings (or lists of them) for image fields."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError("invalid_json", "the JSON body must be an object")
    body = Body()
    for key, value in data.items():
        if key in image_fields:
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list) and not image_fields[key]:
                raise ApiError("invalid_request", f"the field {key!r} takes one image (a base64 string)")
            items = body.images.setdefault(key, [])
            for v in values:
                if not isinstance(v, str):
                    raise ApiError("invalid_request", f"images in {key!r} must be base64 strings")
                items.append(Upload(f"{key}[{len(items)}]", decode_base64_image(v, f"field {key!r}")))
        else:
            body.fields[key] = value
    return body


def _short(exc: BaseException) -> str:
    """A short, safe description of a parser error."""
    text = str(getattr(exc, "detail", "") or exc) or type(exc).__name__
    return text.replace("\n", " ")[:120]


# -- plain fields ------------------------------------------------------------------------------------------------


def printable(text: str, max_len: int = 256) -> bool:
    """Whether ``text`` is 1..max_len characters of valid UTF-8 without control characters."""
    if not text or len(text) > max_len or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. "\ud800" in JSON) cannot be stored
        return False
    return True


def text_field(fields: Mapping[str, Any], name: str, *, required: bool = False, max_len: int = 256) -> str | None:
    """A text field (trimmed), validated for length and control characters."""
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ApiError("invalid_request", f"the field {name!r} is required")
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ApiError("invalid_request", f"the field {name!r} must be a string")
    text = str(value).strip()
    if not printable(text, max_len):
        raise ApiError("invalid_request", f"the field {name!r} must be 1-{max_len} printable characters")
    return text


def int_field(fields: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    """An integer field within ``[lo, hi]``."""
    value = fields.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ApiError("invalid_request", f"the field {name!r} must be an integer")
    try:
        number = int(value) if isinstance(value, (int, str)) else None
    except ValueError:
        number = None
    if number is None or not lo <= number <= hi:
        raise ApiError("invalid_request", f"the field {name!r} must be an integer from {lo} to {hi}")
    return number


def bool_field(fields: Mapping[str, Any], name: str, default: bool = False) -> bool:
    """A boolean field (true/false, 1/0, yes/no)."""
    value = fields.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ApiError("invalid_request", f"the field {name!r} must be true or false")


def heads_field(fields: Mapping[str, Any], default: Sequence[str] = ()) -> tuple[str, ...]:
    """Analysis heads named in ``heads`` (comma-separated text or a JSON list), each one of ``ANALYSIS_HEADS``."""
    from ..analysis import ANALYSIS_HEADS

    value = fields.get("heads")
    if value is None or value == "" or value == []:
        return tuple(default)
    if isinstance(value, str) and len(value) <= 512:
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and len(value) <= 32 and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise ApiError("invalid_request", "the field 'heads' must be a comma-separated string or a list of names")
    unknown = [n for n in names if n not in ANALYSIS_HEADS]
    if unknown:
        raise ApiError("invalid_request", f"unknown head {unknown[0][:40]!r} in 'heads'; known: {', '.join(ANALYSIS_HEADS)}")
    return tuple(dict.fromkeys(names))


def threshold_field(fields: Mapping[str, Any], name: str = "threshold") -> float | str | None:
    """A threshold: a finite number or an operating point string like ``far=1e-3``."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ApiError("invalid_request", f"the field {name!r} must be a number or 'far=<rate>'")
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)):
            raise ApiError("invalid_request", f"the field {name!r} must be finite")
        return _valid_threshold(float(value))
    if isinstance(value, str) and len(value) <= 64:
        return _valid_threshold(value.strip())
    raise ApiError("invalid_request", f"the field {name!r} must be a number or 'far=<rate>'")


def _valid_threshold(value: float | str) -> float | str:
    """``value`` once the library's threshold parser accepts it (``invalid_threshold`` before any image work)."""
    from ..calibration import parse_threshold
    from ..errors import FaceAtlasError

    try:
        parse_threshold(value)
    except FaceAtlasError as exc:
        raise ApiError.from_library(exc) from None
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iteratively: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > _MAX_METADATA_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def metadata_field(fields: Mapping[str, Any], name: str = "metadata") -> dict[str, Any] | None:
    """Optional person metadata: a JSON object (or its JSON text in a form field), at most 4 KB."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if len(value) > 4 * 4096:
            raise ApiError("invalid_request", f"the field {name!r} is over 4 KB")
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise ApiError("invalid_json", f"the field {name!r} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError("invalid_request", f"the field {name!r} must be a JSON object")
    if _depth(value) > _MAX_METADATA_DEPTH:
        raise ApiError("invalid_json", f"the field {name!r} is nested deeper than {_MAX_METADATA_DEPTH} levels")
    try:
        encoded = json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        raise ApiError("invalid_request", f"the field {name!r} must be valid UTF-8 JSON") from None
    if len(encoded) > 4096:
        raise ApiError("invalid_request", f"the field {name!r} is over 4 KB")
    return value
