"""Enrolment and 1:N identification through the gallery with real LFW photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import lfw

from faceatlas.errors import FaceAtlasError, NotFoundError
from faceatlas.images import load_image
from faceatlas.recognition import QualityGates, Recognizer


@pytest.fixture()
def rec(atlas, tmp_path: Path, lfw_dir: Path) -> Recognizer:
    r = Recognizer(atlas, gallery_path=str(tmp_path / "g.db"))
    yield r
    r.close()


def test_enrol_and_identify(rec: Recognizer) -> None:
    a = rec.enroll("c", "Colin_Powell", [lfw("Colin_Powell", i) for i in (1, 2, 3)], name="Colin Powell")
    b = rec.enroll("c", "Tony_Blair", [lfw("Tony_Blair", i) for i in (2, 3, 4)])
    assert len(a.sample_ids) == 3 and len(b.sample_ids) == 3 and not a.rejected
    res = rec.identify("c", lfw("Colin_Powell", 20))
    assert len(res) == 1
    r = res[0]
    assert r.decision is not None and r.decision.external_id == "Colin_Powell" and r.decision.name == "Colin Powell"
    assert r.matches[0].score >= r.threshold and r.margin is not None and r.margin > 0.2
    assert [m.external_id for m in r.matches] == ["Colin_Powell", "Tony_Blair"]
    d = r.to_dict()
    assert d["person"] == "Colin_Powell" and d["threshold"] == pytest.approx(r.threshold, abs=1e-4)
    assert "detection_score" in d and len(d["candidates"]) == 2 and "vector" not in json.dumps(d)


def test_unknown_face_is_rejected_open_set(rec: Recognizer) -> None:
    rec.enroll("c", "Colin_Powell", [lfw("Colin_Powell", i) for i in (1, 2, 3)])
    r = rec.identify("c", lfw("Aaron_Eckhart", 1))[0]
    assert r.decision is None and r.to_dict()["person"] is None
    assert r.matches and r.matches[0].score < r.threshold
    strict = rec.identify("c", lfw("Colin_Powell", 20), threshold=0.99)[0]
    assert strict.decision is None and strict.threshold == 0.99 and strict.threshold_source == "user"


def test_rejections_are_reported_per_image(rec: Recognizer, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (250, 250, 250)).save(blank)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(lfw("Tony_Blair", 2).read_bytes()[:600])
    two = np.concatenate([load_image(lfw("Tony_Blair", 2)).rgb, load_image(lfw("Colin_Powell", 1)).rgb], axis=1)
    res = rec.enroll("c", "Tony_Blair", [lfw("Tony_Blair", 2), blank, corrupt, two, lfw("Tony_Blair", 2)])
    codes = {r.image: r.code for r in res.rejected}
    assert len(res.sample_ids) == 1
    assert codes[str(blank)] == "no_face" and codes[str(corrupt)] == "image_corrupt"
    assert codes["<image 3>"] == "color_order_required"  # numpy input without a colour order
    assert list(codes.values()).count("duplicate_image") == 1


def test_multi_face_policy_and_gates(rec: Recognizer) -> None:
    pair = np.concatenate([load_image(lfw("Tony_Blair", 2)).rgb, load_image(lfw("Colin_Powell", 1)).rgb], axis=1)
    rec.atlas.color = "rgb"
    try:
        res = rec.enroll("c", "x", [pair])
        assert res.rejected[0].code == "multiple_faces" and not res.sample_ids
        assert res.person_id == -1
        with pytest.raises(NotFoundError):
            rec.gallery.get_person("c", "x")  # nothing was written for a person with no accepted image
        ok = rec.enroll("c", "x", [pair], multi_face="largest")
        assert len(ok.sample_ids) == 1
        tiny = rec.enroll("c", "y", [lfw("Tony_Blair", 3)], gates=QualityGates(min_face_size=400))
        assert tiny.rejected[0].code == "face_too_small"
        low = rec.enroll("c", "y", [lfw("Tony_Blair", 3)], gates=QualityGates(min_quality=0.999))
        assert low.rejected[0].code == "low_quality" and "sharpness" in low.rejected[0].message
    finally:
        rec.atlas.color = None


def test_strict_mode_rejects_a_sample_of_someone_else(rec: Recognizer) -> None:
    rec.enroll("c", "Colin_Powell", [lfw("Colin_Powell", i) for i in (1, 2, 3, 4)])
    res = rec.enroll("c", "Tony_Blair", [lfw("Tony_Blair", 2), lfw("Tony_Blair", 3), lfw("Colin_Powell", 5)], strict=True)
    codes = {Path(r.image).name: r.code for r in res.rejected}
    assert codes == {"Colin_Powell_0005.jpg": "ambiguous_identity"}
    assert len(res.sample_ids) == 2
    lax = rec.enroll("c", "Tony_Blair", [lfw("Colin_Powell", 6)], strict=False)
    assert len(lax.sample_ids) == 1


def test_collection_pins_its_model(rec: Recognizer, models_dir: Path, tmp_path: Path) -> None:
    from faceatlas.facade import FaceAtlas

    rec.enroll("c", "Tony_Blair", [lfw("Tony_Blair", 2)])
    other = Recognizer(FaceAtlas(embedder="faceplugin-512", models_dir=models_dir), rec.gallery)
    with pytest.raises(FaceAtlasError) as err:
        other.enroll("c", "Tony_Blair", [lfw("Tony_Blair", 3)])
    assert err.value.code == "model_mismatch"
    with pytest.raises(FaceAtlasError) as err:
        other.identify("c", lfw("Tony_Blair", 3))
    assert err.value.code == "model_mismatch"


def test_delete_person_then_unknown(rec: Recognizer) -> None:
    rec.enroll("c", "Tony_Blair", [lfw("Tony_Blair", i) for i in (2, 3)])
    rec.enroll("c", "Colin_Powell", [lfw("Colin_Powell", 1)])
    assert rec.identify("c", lfw("Tony_Blair", 10))[0].decision is not None
    rec.gallery.delete_person("c", "Tony_Blair")
    r = rec.identify("c", lfw("Tony_Blair", 10))[0]
    assert r.decision is None and all(m.external_id != "Tony_Blair" for m in r.matches)


def test_identify_many_and_multiple_faces(rec: Recognizer) -> None:
    rec.enroll("c", "Tony_Blair", [lfw("Tony_Blair", i) for i in (2, 3)])
    rec.enroll("c", "Colin_Powell", [lfw("Colin_Powell", i) for i in (1, 2)])
    pair = np.concatenate([load_image(lfw("Tony_Blair", 10)).rgb, load_image(lfw("Colin_Powell", 20)).rgb], axis=1)
    rec.atlas.color = "rgb"
    try:
        out = rec.identify_many("c", [pair, lfw("Tony_Blair", 11)])
    finally:
        rec.atlas.color = None
    names = sorted(r.decision.external_id for r in out[0] if r.decision is not None)
    assert "Colin_Powell" in names and "Tony_Blair" in names
    assert out[1][0].decision is not None and out[1][0].decision.external_id == "Tony_Blair"
    with pytest.raises(NotFoundError):
        rec.identify("missing", lfw("Tony_Blair", 10))


def test_reembed_from_kept_crops(rec: Recognizer, models_dir: Path) -> None:
    from faceatlas.facade import FaceAtlas
    from faceatlas.recognition import reembed_collection

    rec.enroll("c", "Tony_Blair", [lfw("Tony_Blair", i) for i in (2, 3)], keep_crops=True)
    rec.enroll("c", "Colin_Powell", [lfw("Colin_Powell", 1)])
    other = Recognizer(FaceAtlas(embedder="faceplugin-512", models_dir=models_dir), rec.gallery)
    moved, missing = reembed_collection(other, "c", "c512")
    assert (moved, missing) == (2, 1)
    r = other.identify("c512", lfw("Tony_Blair", 10))[0]
    assert r.decision is not None and r.decision.external_id == "Tony_Blair" and r.model_id == "faceplugin-512"
