"""Models delivered in a package tarball: fetched once from a loopback HTTP server, both checksums verified, cached."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faceatlas.errors import ModelError
from faceatlas.models import ModelStore
from faceatlas.models.archive import parse_ref
from faceatlas.models.manifest import Manifest, ModelSpec, Source

MEMBERS = ("fr_age.onnx", "fr_eye.onnx")  # two small faceplugin files, packed as in the npm tarball
SPECS = {"fr_age.onnx": "faceplugin-age", "fr_eye.onnx": "faceplugin-eye"}


def _tgz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A gzipped tarball holding ``files`` (and symbolic links) under their member paths."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


class _Served:
    """Bytes served at loopback paths, counting the requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []


@pytest.fixture()
def server() -> Iterator[tuple[str, _Served]]:
    """An http.server on 127.0.0.1 (an ephemeral port) serving ``_Served.files``."""
    served = _Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
            served.hits.append(self.path)
            data = served.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def package(models_dir: Path) -> tuple[bytes, dict[str, bytes]]:
    """The tarball (package/model/<file>, as in faceplugin@1.0.3) and the original files."""
    files = {m: (models_dir / "faceplugin" / m).read_bytes() for m in MEMBERS}
    packed = {f"package/model/{m}": data for m, data in files.items()}
    packed["package/package.json"] = b'{"name": "faceplugin", "version": "1.0.3"}'
    return _tgz(packed), files


def _store(tmp_path: Path, url: str, tgz_sha: str, *, offline: bool = False,
           member_sha: dict[str, str] | None = None) -> ModelStore:
    """A store with no models folder whose faceplugin specs come from the archive at ``url`` (cache first)."""
    specs: list[ModelSpec] = []
    base = Manifest()
    for member, name in SPECS.items():
        spec = base.get(name)
        ref = f"{url}#sha256={tgz_sha}&member=package/model/{member}"
        spec = dataclasses.replace(spec, sources=(Source("cache"), Source("archive", ref)))
        if member_sha and member in member_sha:
            spec = dataclasses.replace(spec, sha256=member_sha[member])
        specs.append(spec)
    return ModelStore(models_dir=tmp_path / "no-models", cache_dir=tmp_path / "cache", offline=offline,
                      manifest=Manifest(tuple(specs)), timeout=10)


def test_manifest_archive_sources_parse() -> None:
    spec = Manifest().get("faceplugin-age")
    ref = next(s.ref for s in spec.sources if s.kind == "archive")
    parsed = parse_ref(ref)
    assert parsed.url.startswith("https://registry.npmjs.org/faceplugin/-/faceplugin-1.0.3.tgz")
    assert parsed.member == "package/model/fr_age.onnx" and len(parsed.sha256) == 64
    with pytest.raises(ModelError) as err:
        parse_ref("https://example.invalid/x.tgz#member=a")
    assert err.value.code == "model_invalid"


def test_fetch_once_verify_and_cache(tmp_path: Path, server: tuple[str, _Served],
                                     package: tuple[bytes, dict[str, bytes]]) -> None:
    url, served = server
    tgz, files = package
    served.files["/faceplugin-1.0.3.tgz"] = tgz
    sha = hashlib.sha256(tgz).hexdigest()
    store = _store(tmp_path, f"{url}/faceplugin-1.0.3.tgz", sha)
    got = store.resolve("faceplugin-age")
    assert got.source == "archive" and got.original.read_bytes() == files["fr_age.onnx"]
    assert got.original == tmp_path / "cache" / "models" / "fr_age.onnx"
    assert served.hits == ["/faceplugin-1.0.3.tgz"]
    # a second member comes out of the cached tarball: no second download
    assert store.resolve("faceplugin-eye").original.read_bytes() == files["fr_eye.onnx"]
    assert len(served.hits) == 1
    # a fresh process (new store) finds the extracted file in the cache, offline too
    again = _store(tmp_path, f"{url}/faceplugin-1.0.3.tgz", sha, offline=True).resolve("faceplugin-age")
    assert again.source == "cache" and len(served.hits) == 1
    assert not list((tmp_path / "cache" / "models").glob(".x-*"))  # no temporary files left behind


def test_offline_never_downloads(tmp_path: Path, server: tuple[str, _Served],
                                 package: tuple[bytes, dict[str, bytes]]) -> None:
    url, served = server
    tgz, _ = package
    served.files["/p.tgz"] = tgz
    store = _store(tmp_path, f"{url}/p.tgz", hashlib.sha256(tgz).hexdigest(), offline=True)
    with pytest.raises(ModelError) as err:
        store.resolve("faceplugin-age")
    assert err.value.code == "model_offline" and served.hits == []


def test_wrong_tarball_checksum_is_refused(tmp_path: Path, server: tuple[str, _Served],
                                           package: tuple[bytes, dict[str, bytes]]) -> None:
    url, served = server
    tgz, _ = package
    served.files["/p.tgz"] = tgz
    store = _store(tmp_path, f"{url}/p.tgz", "0" * 64)
    with pytest.raises(ModelError) as err:
        store.resolve("faceplugin-age")
    assert err.value.code == "model_checksum"
    assert not (tmp_path / "cache" / "models" / "fr_age.onnx").exists()
    assert not [p for p in (tmp_path / "cache" / "archives").iterdir()]  # the bad download is not kept


def test_wrong_member_checksum_is_refused(tmp_path: Path, server: tuple[str, _Served],
                                          package: tuple[bytes, dict[str, bytes]]) -> None:
    url, served = server
    tgz, _ = package
    served.files["/p.tgz"] = tgz
    store = _store(tmp_path, f"{url}/p.tgz", hashlib.sha256(tgz).hexdigest(), member_sha={"fr_age.onnx": "1" * 64})
    with pytest.raises(ModelError) as err:
        store.resolve("faceplugin-age")
    assert err.value.code == "model_checksum"
    assert not (tmp_path / "cache" / "models" / "fr_age.onnx").exists()


def test_missing_or_linked_member_and_server_errors(tmp_path: Path, server: tuple[str, _Served],
                                                    package: tuple[bytes, dict[str, bytes]]) -> None:
    url, served = server
    _, files = package
    odd = _tgz({"package/model/fr_eye.onnx": files["fr_eye.onnx"]}, links={"package/model/fr_age.onnx": "/etc/passwd"})
    served.files["/odd.tgz"] = odd
    store = _store(tmp_path, f"{url}/odd.tgz", hashlib.sha256(odd).hexdigest())
    with pytest.raises(ModelError) as err:
        store.resolve("faceplugin-age")  # a symbolic link, not a regular file
    assert err.value.code == "model_download" and "regular file" in err.value.message
    missing = _tgz({"package/model/other.onnx": b"x"})
    served.files["/missing.tgz"] = missing
    with pytest.raises(ModelError) as err:
        _store(tmp_path / "m", f"{url}/missing.tgz", hashlib.sha256(missing).hexdigest()).resolve("faceplugin-age")
    assert err.value.code == "model_download" and "no member" in err.value.message
    with pytest.raises(ModelError) as err:
        _store(tmp_path / "g", f"{url}/gone.tgz", "2" * 64).resolve("faceplugin-age")
    assert err.value.code == "model_download"
