"""First use without surprises: user calibrations are named and chosen explicitly; enrolment ignores minor faces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import lfw

from faceatlas.calibration import Calibration
from faceatlas.errors import FaceAtlasError
from faceatlas.facade import FaceAtlas


def _tiny(model_id: str = "sface", n: int = 100) -> Calibration:
    """A calibration from ``n`` made-up impostor scores (resolves FAR down to 1/n only)."""
    rng = np.random.default_rng(0)
    return Calibration.from_scores(model_id, rng.normal(0.05, 0.1, n), source="tiny test calibration")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh FACEATLAS_HOME with a calibrations folder."""
    monkeypatch.setenv("FACEATLAS_HOME", str(tmp_path))
    monkeypatch.delenv("FACEATLAS_CALIBRATION", raising=False)
    (tmp_path / "calibrations").mkdir()
    return tmp_path


def test_user_calibration_never_shadows_the_shipped_one(home: Path) -> None:
    shipped = FaceAtlas().operating_point("far=1e-3")
    # A file named after the model in the user folder (what old 'faceatlas calibrate' wrote) is ignored ...
    _tiny().save(home / "calibrations" / "sface.json")
    _tiny().save(home / "calibrations" / "tiny.json")
    again = FaceAtlas().operating_point("far=1e-3")
    assert again == shipped and "tiny" not in again.source
    assert FaceAtlas().far(0.5) == pytest.approx(FaceAtlas().far(0.5)) and FaceAtlas().far(0.5) < 1e-4
    # ... and a user calibration is used only when chosen, by name or by path.
    for choice in ("tiny", str(home / "calibrations" / "tiny.json")):
        fa = FaceAtlas(calibration=choice)
        point = fa.operating_point("far=0.05")
        assert "tiny test calibration" in point.source
        assert point.threshold == pytest.approx(_tiny().threshold_for(0.05))
        assert fa.far(0.5) == pytest.approx(0.01)


def test_unresolvable_far_names_the_calibration_and_its_limits(home: Path) -> None:
    _tiny().save(home / "calibrations" / "tiny.json")
    with pytest.raises(FaceAtlasError) as info:
        FaceAtlas(calibration="tiny").operating_point("far=1e-3")
    err = info.value
    assert err.code == "far_unresolvable"
    text = str(err)
    assert "'tiny'" in text and "100 impostor pairs" in text and "0.01" in text
    assert err.details["calibration"] == "tiny" and err.details["n_impostors"] == 100
    assert err.details["lowest_far"] == pytest.approx(0.01)


def test_chosen_calibration_must_exist_and_match_the_model(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FaceAtlasError, match="'nope' not found"):
        FaceAtlas(calibration="nope").operating_point("far=1e-2")
    _tiny("arcface-r100").save(home / "calibrations" / "other.json")
    with pytest.raises(FaceAtlasError, match="measured for model 'arcface-r100'"):
        FaceAtlas(calibration="other").operating_point("far=1e-2")
    # the environment variable chooses too (for the server and scripts)
    _tiny().save(home / "calibrations" / "tiny.json")
    monkeypatch.setenv("FACEATLAS_CALIBRATION", "tiny")
    assert "tiny" in FaceAtlas().operating_point("far=0.05").source
    # plain numeric thresholds never need a calibration
    assert FaceAtlas(calibration="nope").operating_point(0.4).threshold == 0.4


def test_calibration_names_cannot_hide_a_shipped_one(tmp_path: Path) -> None:
    from faceatlas.evaluate.calibrate import calibration_target

    with pytest.raises(FaceAtlasError, match="shipped calibration"):
        calibration_target(tmp_path, "sface", tmp_path, "sface", None)
    name, path = calibration_target(tmp_path, "sface", tmp_path / "My People", None, None)
    assert name == "sface-My-People" and path == tmp_path / "sface-My-People.json"
    assert calibration_target(tmp_path, "sface", tmp_path, None, tmp_path / "x.json") == (str(tmp_path / "x.json"),
                                                                                         tmp_path / "x.json")
    with pytest.raises(FaceAtlasError):
        calibration_target(tmp_path, "sface", tmp_path, "../evil", None)
    assert os.sep not in name


def _portrait_on_busy_background(second_width: int | None, second_at: tuple[int, int] = (1500, 150)) -> np.ndarray:
    """A large (≈1,200 px) upscaled LFW portrait pasted on a noisy, textured 1,800×1,400 background.

    With ``second_width`` a second, different LFW face of that width is pasted at ``second_at``.
    """
    from conftest import lfw
    from PIL import Image

    rng = np.random.default_rng(1)
    h, w = 1400, 1800
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = (127 + 80 * np.sin(xx / 9.0) * np.cos(yy / 13.0))[..., None]
    bg = np.clip(stripes + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(bg)
    main = Image.open(lfw("Tony_Blair", 1)).crop((50, 40, 200, 210)).resize((1060, 1200), Image.LANCZOS)
    canvas.paste(main, (250, 100))
    if second_width is not None:
        other = Image.open(lfw("Colin_Powell", 1)).crop((60, 50, 190, 200))
        other = other.resize((second_width, int(second_width * 150 / 130)), Image.LANCZOS)
        canvas.paste(other, second_at)
    return np.asarray(canvas)


def test_enrolment_ignores_a_far_smaller_second_face(atlas: FaceAtlas, lfw_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    from faceatlas.pipeline import FaceRequest
    from faceatlas.recognition.enrol import prepare_face

    busy = tmp_path / "busy.png"
    Image.fromarray(_portrait_on_busy_background(second_width=240)).save(busy)
    faces = atlas.run(busy, FaceRequest(faces="all", heads=())).faces
    widths = sorted(f.detection.box.width for f in faces)
    assert len(faces) >= 2 and widths[0] < widths[-1] / 3, widths  # the small face is really detected
    prepared = prepare_face(atlas, busy, source="busy.png")
    assert prepared.face.detection.box.width == widths[-1]  # the main face is the one enrolled
    same = atlas.compare(prepared.template, atlas.template(str(lfw("Tony_Blair", 2)))[0].template)  # type: ignore[arg-type]
    assert same > 0.4
    # two faces of similar size are still refused: nobody can tell which person is meant
    pair = _portrait_on_busy_background(second_width=None)
    two = tmp_path / "two.png"
    Image.fromarray(np.ascontiguousarray(np.concatenate([pair[:, :1300], pair[:, :1300]], axis=1))).save(two)
    with pytest.raises(FaceAtlasError) as info:
        prepare_face(atlas, two, source="two.png")
    assert info.value.code == "multiple_faces"
