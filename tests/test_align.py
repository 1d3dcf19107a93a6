"""Alignment: the similarity transform and the warp, against hand-made landmark sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceatlas.align import ARCFACE_112, align_face, alignment_matrix, similarity_transform, transform_points


def _rotate(points: np.ndarray, degrees: float, center: tuple[float, float]) -> np.ndarray:
    """Rotate points about a centre."""
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    c = np.asarray(center)
    return (points - c) @ rot.T + c


def test_identity_landmarks_give_identity_matrix() -> None:
    mat = alignment_matrix(ARCFACE_112)
    np.testing.assert_allclose(mat, [[1, 0, 0], [0, 1, 0]], atol=1e-9)


@pytest.mark.parametrize("degrees", [-45.0, -10.0, 15.0, 90.0, 180.0])
def test_rotated_landmarks_map_back_to_template(degrees: float) -> None:
    src = _rotate(ARCFACE_112, degrees, (200.0, 150.0))
    mat = alignment_matrix(src)
    np.testing.assert_allclose(transform_points(mat, src), ARCFACE_112, atol=1e-6)
    # The recovered rotation is the inverse one: the matrix's angle is -degrees.
    angle = math.degrees(math.atan2(mat[1, 0], mat[0, 0]))
    assert (angle + degrees + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("scale", "shift"), [(0.25, (0, 0)), (3.0, (40, -7)), (10.0, (1000, 2000))])
def test_scaled_and_shifted_landmarks(scale: float, shift: tuple[float, float]) -> None:
    src = ARCFACE_112 * scale + np.asarray(shift)
    mat = alignment_matrix(src)
    np.testing.assert_allclose(mat[:, :2], np.eye(2) / scale, atol=1e-9)
    np.testing.assert_allclose(transform_points(mat, src), ARCFACE_112, atol=1e-6)


def test_noisy_landmarks_least_squares() -> None:
    rng = np.random.default_rng(0)
    src = _rotate(ARCFACE_112 * 2.0 + 30, 20, (0, 0)) + rng.normal(0, 0.5, (5, 2))
    mat = similarity_transform(src, ARCFACE_112)
    residual = np.linalg.norm(transform_points(mat, src) - ARCFACE_112, axis=1)
    assert residual.max() < 1.5
    # A pure similarity: equal scale on both axes, orthogonal rotation.
    a = mat[:, :2]
    assert a[0, 0] == pytest.approx(a[1, 1]) and a[0, 1] == pytest.approx(-a[1, 0])


def test_mirrored_landmarks_are_not_reflected() -> None:
    mirrored = ARCFACE_112.copy()
    mirrored[:, 0] = 112 - mirrored[:, 0]
    mat = alignment_matrix(mirrored)
    assert np.linalg.det(mat[:, :2]) > 0


def test_degenerate_points_raise() -> None:
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), ARCFACE_112)
    with pytest.raises(ValueError):
        similarity_transform(np.ones((4, 2)), ARCFACE_112)


def test_warp_puts_marked_pixels_on_template() -> None:
    """Dots drawn at rotated, scaled landmark positions land on the template after alignment."""
    img = np.zeros((400, 500, 3), np.uint8)
    src = _rotate(ARCFACE_112 * 2.5 + np.array([120, 60]), 25, (250, 200))
    for i, (x, y) in enumerate(src):
        img[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = (50 * (i + 1), 255, 0)
    crop = align_face(img, src)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for i, (x, y) in enumerate(ARCFACE_112):
        patch = crop[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2]
        assert patch[:, :, 1].max() > 150, f"landmark {i} not at template position"
        assert abs(int(patch[:, :, 0].max()) - 50 * (i + 1)) < 40


def test_dlib_template_scales_and_maps() -> None:
    from faceatlas.align import DLIB_150, template_points

    np.testing.assert_allclose(template_points("dlib150"), DLIB_150)
    np.testing.assert_allclose(template_points("arcface112", 224), ARCFACE_112 * 2)
    src = DLIB_150 * 0.5 + 10
    crop = align_face(np.zeros((200, 200, 3), np.uint8), src, 150, "dlib150")
    assert crop.shape == (150, 150, 3)
    np.testing.assert_allclose(transform_points(alignment_matrix(src, 150, "dlib150"), src), DLIB_150, atol=1e-6)
    with pytest.raises(ValueError):
        template_points("nope")
