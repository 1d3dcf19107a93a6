"""Embedding and 1:1 verification on real LFW photos."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import lfw

from faceatlas.errors import FaceAtlasError
from faceatlas.images import load_image
from faceatlas.types import Face, Template

SAME = [("Abel_Pacheco", 1, 4), ("Akhmed_Zakayev", 1, 3), ("Amber_Tamblyn", 1, 2), ("George_W_Bush", 10, 20)]
DIFFERENT = [("Abel_Pacheco", 1, "Aaron_Eckhart", 1), ("Amber_Tamblyn", 1, "Akhmed_Zakayev", 1)]


@pytest.mark.parametrize(("name", "i", "j"), SAME)
def test_same_person(atlas, lfw_dir: Path, name: str, i: int, j: int) -> None:
    v = atlas.verify(lfw(name, i), lfw(name, j))
    assert v.same, f"score {v.score}"
    assert v.threshold == pytest.approx(atlas.store.spec("sface").default_threshold)
    assert v.threshold_source == "model default" and v.model_id == "sface"


@pytest.mark.parametrize(("a", "i", "b", "j"), DIFFERENT)
def test_different_people(atlas, lfw_dir: Path, a: str, i: int, b: str, j: int) -> None:
    v = atlas.verify(lfw(a, i), lfw(b, j))
    assert not v.same and v.score < v.threshold


def test_threshold_is_echoed_and_applied(atlas, lfw_dir: Path) -> None:
    v = atlas.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4), threshold=0.99)
    assert not v.same and v.threshold == 0.99 and v.threshold_source == "user"
    assert atlas.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4), threshold="0.05").same
    with pytest.raises(FaceAtlasError) as err:
        atlas.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4), threshold="banana")
    assert err.value.code == "invalid_threshold"


def test_templates_are_unit_float32(atlas, lfw_dir: Path) -> None:
    faces = atlas.embed(lfw("Aaron_Eckhart", 1))
    assert len(faces) == 1
    t = faces[0].template
    assert isinstance(t, Template) and t.vector.dtype == np.float32 and t.dim == 128
    assert np.linalg.norm(t.vector) == pytest.approx(1.0, abs=1e-5)
    assert not t.vector.flags.writeable
    assert "vector" not in faces[0].to_dict()["template"], "templates are not serialised unless asked"


def test_batched_equals_single(atlas, lfw_dir: Path) -> None:
    paths = [lfw("Abel_Pacheco", 1), lfw("Aaron_Eckhart", 1), lfw("Amber_Tamblyn", 2)]
    batch = atlas.embed_many(paths, faces="one")
    for path, faces in zip(paths, batch, strict=False):
        single = atlas.embed(path, faces="one")[0]
        np.testing.assert_allclose(faces[0].template.vector, single.template.vector, atol=1e-5)


def test_input_kinds_give_the_same_template(atlas, lfw_dir: Path) -> None:
    from PIL import Image

    path = lfw("Amber_Tamblyn", 1)
    rgb = load_image(path).rgb
    ref = atlas.template(path)[0].template.vector
    for src, color in ((path.read_bytes(), None), (rgb, "rgb"), (rgb[:, :, ::-1].copy(), "bgr"), (Image.open(path), None)):
        np.testing.assert_allclose(atlas.template(src, color=color)[0].template.vector, ref, atol=1e-5)


def test_multi_face_input_says_which_face(atlas, lfw_dir: Path) -> None:
    a = load_image(lfw("Abel_Pacheco", 1)).rgb
    b = load_image(lfw("Aaron_Eckhart", 1)).rgb
    pair = np.concatenate([b, a], axis=1)  # Aaron left, Abel right
    right = atlas.verify(pair, lfw("Abel_Pacheco", 4), color="rgb", face_a=None, select="score")
    assert right.faces_in_a >= 2
    by_index = [atlas.verify(pair, lfw("Abel_Pacheco", 4), color="rgb", face_a=i) for i in range(right.faces_in_a)]
    best = max(by_index, key=lambda v: v.score)
    assert best.same and best.face_a.box.center[0] > 250
    with pytest.raises(FaceAtlasError) as err:
        atlas.verify(pair, lfw("Abel_Pacheco", 4), color="rgb", face_a=7)
    assert err.value.code == "face_index"


def test_verify_accepts_embedded_faces(atlas, lfw_dir: Path) -> None:
    fa = atlas.embed(lfw("Abel_Pacheco", 1))[0]
    fb = atlas.embed(lfw("Abel_Pacheco", 4))[0]
    assert isinstance(fa, Face) and atlas.verify(fa, fb).same
    with pytest.raises(FaceAtlasError) as err:
        atlas.verify(Face(fa.detection), fb)
    assert err.value.code == "no_face"


def test_no_face_and_bad_files_raise_codes(atlas, tmp_path: Path, lfw_dir: Path) -> None:
    blank = np.full((200, 200, 3), 255, np.uint8)
    with pytest.raises(FaceAtlasError) as err:
        atlas.verify(blank, lfw("Abel_Pacheco", 1), color="rgb")
    assert err.value.code == "no_face"
    (tmp_path / "bad.jpg").write_bytes(lfw("Abel_Pacheco", 1).read_bytes()[:500])
    with pytest.raises(FaceAtlasError) as err:
        atlas.verify(tmp_path / "bad.jpg", lfw("Abel_Pacheco", 1))
    assert err.value.code == "image_corrupt"


def test_models_must_match(atlas, lfw_dir: Path) -> None:
    t = atlas.template(lfw("Abel_Pacheco", 1))[0].template
    other = Template(np.ones(128, np.float32), "faceplugin-512")
    with pytest.raises(FaceAtlasError) as err:
        atlas.compare(t, other)
    assert err.value.code == "model_mismatch"


def test_flip_tta_and_second_embedder(models_dir: Path, lfw_dir: Path) -> None:
    from faceatlas.facade import FaceAtlas

    flip = FaceAtlas(flip=True)
    v = flip.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4))
    assert v.model_id == "sface+flip" and v.same
    big = FaceAtlas(embedder="faceplugin-512", models_dir=models_dir)
    t = big.template(lfw("Abel_Pacheco", 1))[0].template
    assert t.dim == 512 and t.model_id == "faceplugin-512"
    assert big.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4)).same
    assert not big.verify(lfw("Abel_Pacheco", 1), lfw("Aaron_Eckhart", 1)).same


def test_shared_instance_across_threads(atlas, lfw_dir: Path) -> None:
    paths = [lfw("Abel_Pacheco", 1), lfw("Aaron_Eckhart", 1), lfw("Amber_Tamblyn", 2), lfw("Akhmed_Zakayev", 1)]
    expected = {p: atlas.template(p)[0].template.vector for p in paths}
    errors: list[BaseException] = []

    def work(p: Path) -> None:
        try:
            for _ in range(3):
                np.testing.assert_allclose(atlas.template(p)[0].template.vector, expected[p], atol=1e-5)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in paths * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_import_does_no_work() -> None:
    import subprocess
    import sys

    code = "import sys, faceatlas; assert 'onnxruntime' not in sys.modules and 'cv2' not in sys.modules; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "ok"


def test_operating_point_from_shipped_calibration(atlas, lfw_dir: Path) -> None:
    v = atlas.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4), threshold="far=1e-3")
    assert v.threshold_source.startswith("far=0.001") and "lfw/images" in v.threshold_source
    assert 0.3 < v.threshold < 0.45 and v.same
    assert v.far is not None and v.far < 1e-3  # a genuine pair scores far above the 1e-3 operating point
    strict = atlas.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4), threshold="far=1e-6")
    assert strict.threshold > v.threshold
    impostor = atlas.verify(lfw("Abel_Pacheco", 1), lfw("Aaron_Eckhart", 1))
    assert impostor.far is not None and impostor.far > 1e-3


def test_embed_many_validates_and_chunks(atlas, lfw_dir: Path) -> None:
    paths = [lfw("Abel_Pacheco", 1), lfw("Aaron_Eckhart", 1), lfw("Amber_Tamblyn", 2)]
    small = atlas.embed_many(paths, faces="one", chunk=1)
    big = atlas.embed_many(paths, faces="one")
    assert [len(x) for x in small] == [1, 1, 1]
    for a, b in zip(small, big, strict=True):
        np.testing.assert_allclose(a[0].template.vector, b[0].template.vector, atol=1e-5)
    with pytest.raises(FaceAtlasError) as err:
        atlas.embed_many(paths, faces="One")
    assert err.value.code == "invalid_input"
