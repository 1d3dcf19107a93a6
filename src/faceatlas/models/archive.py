"""Model files delivered inside a package tarball (e.g. the npm registry tarball of faceplugin@1.0.3).

A manifest source ``Source("archive", "<https url>#sha256=<tarball sha256>&member=<path in the tarball>")`` is
resolved by downloading the tarball once into ``<cache>/archives/`` (never when offline), checking its sha256,
extracting the one named member (a regular file) and checking that member's sha256 against the model's manifest
entry before it lands in ``<cache>/models/``, where the store's cache source finds it from then on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import ModelError
from .manifest import ModelSpec
from .trust import sha256_file

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_FETCH_LOCK = threading.Lock()  # one download of a tarball at a time in this process (not a model holder)


@dataclass(frozen=True)
class ArchiveRef:
    """Where a model file sits: the tarball's URL and sha256, and the member path inside it."""

    url: str
    sha256: str
    member: str

    @property
    def filename(self) -> str:
        """The cached tarball's file name: its checksum prefix and the URL's last path segment."""
        base = os.path.basename(urlsplit(self.url).path) or "archive.tgz"
        return f"{self.sha256[:16]}-{base}"


def parse_ref(ref: str) -> ArchiveRef:
    """Split ``<url>#sha256=<hex>&member=<path>``; ``model_invalid`` when a part is missing or malformed."""
    url, _, fragment = ref.partition("#")
    fields = parse_qs(fragment, keep_blank_values=True)
    sha = (fields.get("sha256") or [""])[0].lower()
    member = (fields.get("member") or [""])[0]
    scheme = urlsplit(url).scheme
    if scheme not in ("https", "http") or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or not member:
        raise ModelError("model_invalid", f"archive source {ref[:200]!r} must be <url>#sha256=<64 hex>&member=<path>")
    return ArchiveRef(url, sha, member)


def fetch_member(spec: ModelSpec, refs: Sequence[str], cache_dir: Path, *, offline: bool,
                 timeout: float = 60.0) -> Path:
    """The model file of ``spec`` extracted from the first archive source that yields it, cached and verified."""
    errors: list[str] = []
    codes: list[str] = []
    for ref in refs:
        archive = parse_ref(ref)
        try:
            tarball = _tarball(archive, cache_dir / "archives", offline=offline, timeout=timeout)
            return _extract(tarball, archive.member, spec, cache_dir / "models")
        except ModelError as exc:
            if exc.code == "model_offline":
                raise
            errors.append(exc.message)
            codes.append(exc.code)
    code = "model_checksum" if "model_checksum" in codes else codes[0] if codes else "model_not_found"
    raise ModelError(code, f"model {spec.name!r}: {'; '.join(errors) or 'no archive source'}")


def _tarball(archive: ArchiveRef, folder: Path, *, offline: bool, timeout: float) -> Path:
    """The verified tarball in the cache, downloaded first when it is not there (never when ``offline``)."""
    path = folder / archive.filename
    with _FETCH_LOCK:
        if path.is_file():
            if sha256_file(path) == archive.sha256:
                return path
            log.warning("cached archive %s has the wrong sha256; downloading it again", path)
            path.unlink(missing_ok=True)
        if offline:
            raise ModelError("model_offline", f"{archive.member} comes from {archive.url}, which is not in the cache "
                                              f"({folder}) and FACEATLAS_OFFLINE forbids downloading it; set "
                                              "FACEATLAS_MODELS to a folder holding the model file")
        _download(archive, path, timeout)
        return path


def _download(archive: ArchiveRef, dest: Path, timeout: float) -> None:
    """Stream the tarball into ``dest`` via a temporary file, keeping it only when its sha256 matches."""
    import urllib.error  # imported here: network modules cost startup time and are rarely needed
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".dl-", dir=dest.parent)
    tmp = Path(tmp_name)
    log.info("downloading model archive %s", archive.url)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(archive.url, timeout=timeout) as resp:  # noqa: S310
            for block in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != archive.sha256:
            raise ModelError("model_checksum", f"{archive.url}: sha256 {digest.hexdigest()[:16]}… does not match "
                                               f"the manifest's {archive.sha256[:16]}…")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ModelError("model_download", f"{archive.url}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _extract(tarball: Path, member: str, spec: ModelSpec, folder: Path) -> Path:
    """Copy one regular-file member out of the tarball to ``folder/spec.file`` if its sha256 is the model's."""
    dest = folder / spec.file
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball, "r:*") as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                raise ModelError("model_download", f"{tarball.name} has no member {member!r}") from None
            if not info.isfile():
                raise ModelError("model_download", f"{tarball.name}: {member!r} is not a regular file")
            source = tar.extractfile(info)
            assert source is not None
            fd, tmp_name = tempfile.mkstemp(prefix=".x-", dir=folder)
            tmp = Path(tmp_name)
            try:
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, source:
                    for block in iter(lambda: source.read(_CHUNK), b""):
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != spec.sha256:
                    raise ModelError("model_checksum", f"{tarball.name}: member {member!r} has sha256 "
                                                       f"{digest.hexdigest()[:16]}…, expected {spec.sha256[:16]}…")
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelError("model_download", f"{tarball.name}: cannot read the archive ({exc})") from None
    log.info("model %s extracted from %s to %s", spec.name, tarball.name, dest)
    return dest
