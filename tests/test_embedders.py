"""Other embedders and ensembles: TFLite MobileFaceNet, dlib ResNet, weighted fusion across alignments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import lfw

from faceatlas.errors import FaceAtlasError
from faceatlas.models import Manifest, ModelStore
from faceatlas.models.manifest import BUILTIN_MODELS


def _store(models_dir: Path, extra: object | None = None) -> ModelStore:
    manifest = Manifest(BUILTIN_MODELS)
    if extra is not None:
        manifest.register(extra)  # type: ignore[arg-type]
    return ModelStore(models_dir=models_dir, manifest=manifest, offline=True)


@pytest.mark.parametrize("name", ["mobilefacenet-192", "dlib-resnet"])
def test_optional_runtime_embedders(models_dir: Path, lfw_dir: Path, name: str) -> None:
    pytest.importorskip("ai_edge_litert" if name.startswith("mobile") else "dlib")
    from faceatlas.facade import FaceAtlas

    fa = FaceAtlas(embedder=name, store=_store(models_dir))
    same = fa.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4), threshold=-1)
    diff = fa.verify(lfw("Abel_Pacheco", 1), lfw("Aaron_Eckhart", 1), threshold=-1)
    assert same.score > diff.score + 0.05
    t = fa.template(lfw("Abel_Pacheco", 1))[0].template
    assert t.model_id == name and t.dim == fa.store.spec(name).dim


def test_ensemble_mixes_alignments(models_dir: Path, lfw_dir: Path) -> None:
    import dataclasses

    pytest.importorskip("dlib")
    from faceatlas.embed import create_embedder
    from faceatlas.facade import FaceAtlas

    base = next(s for s in BUILTIN_MODELS if s.name == "sface")
    spec = dataclasses.replace(base, name="mix", architecture="ensemble", members=(("sface", 1.0), ("dlib-resnet", 3.0)),
                               dim=256, sha256="", sources=())
    store = _store(models_dir, spec)
    fa = FaceAtlas(embedder="mix", store=store)
    a = fa.template(lfw("Abel_Pacheco", 1))[0].template
    b = fa.template(lfw("Abel_Pacheco", 4))[0].template
    assert a.dim == 256 and a.model_id == "mix"
    # The fused cosine is the weight-averaged member cosine.
    members = [FaceAtlas(embedder=m, store=store) for m in ("sface", "dlib-resnet")]
    cos = [m.compare(m.template(lfw("Abel_Pacheco", 1))[0].template, m.template(lfw("Abel_Pacheco", 4))[0].template)
           for m in members]
    assert fa.compare(a, b) == pytest.approx((1.0 * cos[0] + 3.0 * cos[1]) / 4.0, abs=1e-4)
    with pytest.raises(FaceAtlasError) as err:
        create_embedder("mix", store).embed_crops(np.zeros((1, 112, 112, 3), np.uint8))
    assert err.value.code == "invalid_input"


def test_builtin_fusion_verifies_with_its_shipped_calibration(models_dir: Path, lfw_dir: Path) -> None:
    """The manifest's fusion model works like any model: verify at far=1e-3, echo the threshold, estimate the FAR."""
    pytest.importorskip("dlib")
    from faceatlas.facade import FaceAtlas

    fa = FaceAtlas(embedder="fusion", store=_store(models_dir))
    same = fa.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4), threshold="far=1e-3")
    diff = fa.verify(lfw("Abel_Pacheco", 1), lfw("Aaron_Eckhart", 1), threshold="far=1e-3")
    assert same.same and not diff.same
    assert same.threshold == diff.threshold and same.threshold_source.startswith("far=")
    assert same.far is not None and diff.far is not None and diff.far > same.far
    default = fa.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4))
    assert default.threshold == pytest.approx(fa.store.spec("fusion").default_threshold)


@pytest.mark.parametrize("name", [s.name for s in BUILTIN_MODELS if s.task == "recognition"])
def test_every_recognition_model_ships_a_calibration(name: str) -> None:
    """Every built-in recogniser (and its +flip variant) has a calibration measured on LFW in the package."""
    from faceatlas.calibration import Calibration

    root = Path(__file__).resolve().parents[1] / "src" / "faceatlas" / "calibrations"
    variants = [name] if name == "fusion" else [name, f"{name}+flip"]
    for model_id in variants:
        cal = Calibration.from_json((root / f"{model_id}.json").read_text())
        assert cal.model_id == model_id and cal.n_impostors > 80_000_000 and "lfw" in cal.source
