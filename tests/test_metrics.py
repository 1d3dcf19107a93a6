"""Hand-computed checks of the verification and identification metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceatlas.errors import InvalidInputError
from faceatlas.evaluate.metrics import (
    Eer,
    Roc,
    accuracy_at_threshold,
    best_threshold_accuracy,
    cmc,
    dir_at_fpir,
    eer,
    kfold_accuracy,
    rank_k,
    roc_auc,
    roc_curve,
    tar_at_far,
)

# 4 genuine + 4 impostor scores. Sorted high to low: .9G .8G .7G .6I .5I .4G .3I .2I
SCORES = [0.9, 0.8, 0.7, 0.4, 0.6, 0.5, 0.3, 0.2]
LABELS = [True, True, True, True, False, False, False, False]


# ---------------------------------------------------------------------------------------------------------------------
# ROC, AUC, EER
# ---------------------------------------------------------------------------------------------------------------------


def test_roc_points_by_hand() -> None:
    roc = roc_curve(SCORES, LABELS)
    assert roc.thresholds.tolist() == [math.inf, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    assert roc.fpr.tolist() == [0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 0.5, 0.75, 1.0]
    assert roc.tpr.tolist() == [0.0, 0.25, 0.5, 0.75, 0.75, 0.75, 1.0, 1.0, 1.0]


def test_roc_arrays_are_read_only() -> None:
    roc = roc_curve(SCORES, LABELS)
    with pytest.raises(ValueError):
        roc.fpr[0] = 1.0


def test_auc_by_hand() -> None:
    # 14 of the 16 (genuine, impostor) pairs are ordered correctly: .4 loses to .6 and .5.
    assert roc_auc(roc_curve(SCORES, LABELS)) == pytest.approx(14 / 16)


def test_roc_ties_move_together() -> None:
    # Scores: .9G, then .5 shared by one genuine and two impostors, then .1I.
    roc = roc_curve([0.9, 0.5, 0.5, 0.5, 0.1], [1, 1, 0, 0, 0])
    assert roc.thresholds.tolist() == [math.inf, 0.9, 0.5, 0.1]
    assert roc.tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert roc.fpr.tolist() == pytest.approx([0.0, 0.0, 2 / 3, 1.0])
    # The tie is a straight diagonal segment, not a staircase: AUC = 1/2 * ... by trapezoid
    # segment (0,.5)->(2/3,1): area 2/3 * .75 = .5; segment (2/3,1)->(1,1): 1/3.
    assert roc_auc(roc) == pytest.approx(0.5 + 1 / 3)


def test_roc_does_not_depend_on_input_order() -> None:
    order = [7, 2, 5, 0, 3, 6, 1, 4]
    a = roc_curve(SCORES, LABELS)
    b = roc_curve(np.asarray(SCORES)[order], np.asarray(LABELS)[order])
    assert np.array_equal(a.fpr, b.fpr) and np.array_equal(a.tpr, b.tpr)


def test_eer_exact_point() -> None:
    # At threshold .6: accepted impostors {.6} -> FAR 1/4; rejected genuine {.4} -> FRR 1/4.
    result = eer(SCORES, LABELS)
    assert isinstance(result, Eer)
    value, threshold = result
    assert value == pytest.approx(0.25)
    assert threshold == pytest.approx(0.6)


def test_eer_interpolated() -> None:
    # Genuine .9 .8 .3, impostor .7 .2. ROC: (0,0) (0,1/3)@.9 (0,2/3)@.8 (.5,2/3)@.7 (.5,1)@.3 (1,1)@.2.
    # FAR-FRR: -1, -2/3, -1/3, +1/6, ... crossing 2/3 of the way from .8 to .7 -> EER 1/3 at .8 - 2/3*.1.
    value, threshold = eer([0.9, 0.8, 0.3, 0.7, 0.2], [1, 1, 1, 0, 0])
    assert value == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.8 - 0.1 * 2 / 3)


def test_eer_on_first_segment_uses_top_score() -> None:
    # .9 shared by one genuine and two impostors: first point (2/3, 1) -> diff -1 then +2/3 -> alpha .6.
    value, threshold = eer([0.9, 0.9, 0.9, 0.1], [1, 0, 0, 0])
    assert value == pytest.approx(0.4)
    assert threshold == 0.9


def test_perfect_separation() -> None:
    scores = [0.9, 0.8, 0.2, 0.1]
    labels = [1, 1, 0, 0]
    assert roc_auc(roc_curve(scores, labels)) == 1.0
    assert eer(scores, labels).eer == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# TAR @ FAR
# ---------------------------------------------------------------------------------------------------------------------


def test_tar_at_far_by_hand() -> None:
    r = tar_at_far(SCORES, LABELS, 0.25)
    assert (r.tar, r.threshold, r.far_achieved, r.resolvable) == (0.75, 0.6, 0.25, True)
    assert (r.n_impostors, r.n_genuine) == (4, 4)
    # 0.3 allows no more than one impostor: same operating point.
    r = tar_at_far(SCORES, LABELS, 0.3)
    assert (r.tar, r.threshold, r.far_achieved) == (0.75, 0.6, 0.25)
    # 0.5 allows two impostors: lowest such threshold is .4 (impostors .6, .5 accepted), all genuine accepted.
    r = tar_at_far(SCORES, LABELS, 0.5)
    assert (r.tar, r.threshold, r.far_achieved) == (1.0, 0.4, 0.5)
    r = tar_at_far(SCORES, LABELS, 1.0)
    assert (r.tar, r.threshold, r.far_achieved) == (1.0, 0.2, 1.0)


def test_tar_at_far_unresolvable() -> None:
    # 4 impostors cannot resolve FAR < 1/4.
    r = tar_at_far(SCORES, LABELS, 0.2)
    assert r.resolvable is False
    assert math.isnan(r.tar) and math.isnan(r.threshold) and math.isnan(r.far_achieved)
    assert r.n_impostors == 4 and r.far == 0.2


def test_tar_at_far_exact_resolution_limit() -> None:
    # FAR = 1/n exactly is resolvable even when k/n is not bit-identical to the requested value.
    rng = np.random.default_rng(1)
    impostor = rng.normal(size=6000)
    genuine = rng.normal(loc=3.0, size=100)
    scores = np.r_[genuine, impostor]
    labels = np.r_[np.ones(100, bool), np.zeros(6000, bool)]
    r = tar_at_far(scores, labels, 1 / 6000)
    assert r.resolvable and r.far_achieved == pytest.approx(1 / 6000)
    r = tar_at_far(scores, labels, 1e-3)
    assert r.resolvable and r.far_achieved == pytest.approx(6 / 6000)
    assert np.count_nonzero(impostor >= r.threshold) == 6


def test_tar_at_far_ties() -> None:
    # Impostors tied with a genuine at .5: accepting .5 accepts two of four impostors at once.
    scores = [0.9, 0.5, 0.5, 0.5, 0.1, 0.0]
    labels = [1, 1, 0, 0, 0, 0]
    r = tar_at_far(scores, labels, 0.25)
    assert (r.tar, r.threshold, r.far_achieved) == (0.5, 0.9, 0.0)
    r = tar_at_far(scores, labels, 0.5)
    assert (r.tar, r.threshold, r.far_achieved) == (1.0, 0.5, 0.5)


def test_tar_at_far_ties_at_top_accept_nothing() -> None:
    # Two impostors tied at the top score: no observed threshold reaches FAR <= 1/2.
    r = tar_at_far([0.9, 0.9, 0.5], [0, 0, 1], 0.5)
    assert r.resolvable
    assert (r.tar, r.far_achieved) == (0.0, 0.0)
    assert r.threshold > 0.9


# ---------------------------------------------------------------------------------------------------------------------
# Accuracy and k-fold
# ---------------------------------------------------------------------------------------------------------------------


def test_best_threshold_by_hand() -> None:
    # Correct decisions per candidate: accept>=.2:4 .3:5 .4:6 .5:5 .6:6 .7:7 .8:6 .9:5 none:4 -> between .6 and .7.
    assert best_threshold_accuracy(SCORES, LABELS) == pytest.approx(0.65)
    assert accuracy_at_threshold(SCORES, LABELS, 0.65) == 7 / 8


def test_best_threshold_extremes() -> None:
    assert best_threshold_accuracy([0.1, 0.2, 0.3], [1, 1, 1]) == 0.1  # accept all
    rejected = best_threshold_accuracy([0.1, 0.2, 0.3], [0, 0, 0])
    assert rejected > 0.3 and accuracy_at_threshold([0.1, 0.2, 0.3], [0, 0, 0], rejected) == 1.0


def test_kfold_known_answer() -> None:
    # Three folds of genuine {.7,.8} + impostor {.2,.3}; fold 2 also holds an impostor at .75 (index 12).
    # Held out 0 or 1: training includes the .75 impostor, best threshold still .5 (8/9). Accuracy 1.0.
    # Held out 2: training is clean, threshold .5; the .75 impostor is accepted -> 4/5.
    scores = [0.7, 0.8, 0.2, 0.3] * 3 + [0.75]
    labels = [1, 1, 0, 0] * 3 + [0]
    folds = [0] * 4 + [1] * 4 + [2] * 4 + [2]
    r = kfold_accuracy(scores, labels, folds)
    assert r.folds.tolist() == [0, 1, 2]
    assert r.accuracies.tolist() == pytest.approx([1.0, 1.0, 0.8])
    assert r.thresholds.tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert r.mean == pytest.approx(14 / 15)
    assert r.std == pytest.approx(math.sqrt(2) / 15)  # population std: deviations 1/15, 1/15, -2/15
    assert r.misclassified.tolist() == [12]


def test_kfold_ten_folds_uses_other_folds_only() -> None:
    # Every fold holds one genuine (.6) and one impostor (.4): each training set picks the midpoint .5.
    scores, labels, folds = [], [], []
    for k in range(10):
        scores += [0.6, 0.4]
        labels += [1, 0]
        folds += [k, k]
    r = kfold_accuracy(scores, labels, np.asarray(folds))
    assert r.accuracies.tolist() == [1.0] * 10
    assert r.mean == 1.0 and r.std == 0.0 and r.misclassified.size == 0
    assert r.thresholds.tolist() == pytest.approx([0.5] * 10)


# ---------------------------------------------------------------------------------------------------------------------
# Identification
# ---------------------------------------------------------------------------------------------------------------------

# Rows = gallery (alice, bob, carol); columns = probes (alice, bob, carol, zed).
# alice probe: .9 best -> rank 1. bob probe: alice .6 > bob .5 -> rank 2. carol probe: rank 1. zed: not in gallery.
SIM_CMC = [
    [0.9, 0.6, 0.4, 0.2],
    [0.3, 0.5, 0.3, 0.65],
    [0.2, 0.1, 0.7, 0.1],
]


def test_cmc_by_hand() -> None:
    curve = cmc(SIM_CMC, ["alice", "bob", "carol"], ["alice", "bob", "carol", "zed"], max_rank=3)
    assert curve.tolist() == pytest.approx([2 / 3, 1.0, 1.0])
    assert rank_k(curve, 1) == pytest.approx(2 / 3)
    assert rank_k(curve, 2) == 1.0


def test_cmc_longer_than_gallery_saturates() -> None:
    curve = cmc(SIM_CMC, ["alice", "bob", "carol"], ["alice", "bob", "carol", "zed"])
    assert curve.shape == (20,)
    assert curve[-1] == 1.0


def test_cmc_integer_labels_and_numpy_input() -> None:
    curve = cmc(np.asarray(SIM_CMC, np.float32), np.array([1, 2, 3]), np.array([1, 2, 3, 99]), max_rank=2)
    assert curve.tolist() == pytest.approx([2 / 3, 1.0])


def test_cmc_multiple_gallery_entries_per_identity() -> None:
    # Gallery rows: A, A, B. Probe A: best A entry .8 beats B .5 -> rank 1.
    # Probe B: A's best entry .6 beats B .5 -> rank 2 (A counted once, not twice).
    sim = [
        [0.2, 0.6],
        [0.8, 0.1],
        [0.5, 0.5],
    ]
    curve = cmc(sim, ["A", "A", "B"], ["A", "B"], max_rank=2)
    assert curve.tolist() == [0.5, 1.0]


def test_cmc_ties_count_against_probe() -> None:
    curve = cmc([[0.5], [0.5]], ["A", "B"], ["A"], max_rank=2)
    assert curve.tolist() == [0.0, 1.0]


# Rows = gallery (A, B, C); columns = probes (A, C, U1, U2). Top scores: .9 (A, correct), .6 (C, correct),
# .7 (U1, unknown), .65 (U2, unknown).
SIM_DIR = [
    [0.9, 0.4, 0.2, 0.65],
    [0.3, 0.3, 0.7, 0.4],
    [0.2, 0.6, 0.1, 0.3],
]
GALLERY = ["A", "B", "C"]
PROBES = ["A", "C", "U1", "U2"]


def test_dir_at_fpir_by_hand() -> None:
    # FPIR 1: lowest observed top score .6 -> both known probes detected and identified.
    r = dir_at_fpir(SIM_DIR, GALLERY, PROBES, 1.0)
    assert (r.dir, r.threshold, r.fpir_achieved, r.resolvable) == (1.0, 0.6, 1.0, True)
    assert (r.n_known, r.n_unknown, r.n_identities, r.rank1) == (2, 2, 3, 1.0)
    # FPIR 1/2: at most one unknown above threshold -> .65 still lets both through, so threshold .7 (only U1 >= .7)
    # and probe C (.6) is lost.
    r = dir_at_fpir(SIM_DIR, GALLERY, PROBES, 0.5)
    assert (r.dir, r.threshold, r.fpir_achieved) == (0.5, 0.7, 0.5)


def test_dir_at_fpir_unresolvable() -> None:
    r = dir_at_fpir(SIM_DIR, GALLERY, PROBES, 0.4)  # 2 unknown probes cannot resolve FPIR < 1/2
    assert r.resolvable is False
    assert math.isnan(r.dir) and math.isnan(r.threshold) and math.isnan(r.fpir_achieved)
    assert r.rank1 == 1.0


def test_dir_requires_rank1_correct() -> None:
    # Using the CMC matrix: bob's probe has a high top score (.6) but for the wrong identity, so never counts.
    r = dir_at_fpir(SIM_CMC, ["alice", "bob", "carol"], ["alice", "bob", "carol", "zed"], 1.0)
    assert r.threshold == 0.6
    assert r.dir == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.1, 0.2], [1]),  # length mismatch
        ([], []),  # empty
        ([0.1, float("nan")], [1, 0]),  # NaN score
        ([0.1, float("inf")], [1, 0]),  # infinite score
        ([0.1, 0.2], [1, 2]),  # not boolean-like
        ([0.1, 0.2], ["yes", "no"]),  # strings
        ([0.1, 0.2], [1.0, float("nan")]),  # NaN label
        (["a", "b"], [1, 0]),  # non-numeric scores
        ([[0.1, 0.2]], [[1, 0]]),  # 2-D
        ([0.1, 0.2], [1, 1]),  # no impostors
        ([0.1, 0.2], [0, 0]),  # no genuine
    ],
)
def test_verification_validation(scores: list[object], labels: list[object]) -> None:
    with pytest.raises(InvalidInputError) as info:
        roc_curve(scores, labels)  # type: ignore[arg-type]
    assert info.value.code == "invalid_input"
    with pytest.raises(InvalidInputError) as info:
        eer(scores, labels)  # type: ignore[arg-type]
    assert info.value.code == "invalid_input"


@pytest.mark.parametrize("far", [0.0, -0.1, 1.5, float("nan"), "0.1", True])
def test_tar_at_far_rejects_bad_far(far: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        tar_at_far(SCORES, LABELS, far)  # type: ignore[arg-type]
    assert info.value.code == "invalid_input"


def test_kfold_validation() -> None:
    with pytest.raises(InvalidInputError, match="two distinct folds"):
        kfold_accuracy(SCORES, LABELS, [0] * 8)
    with pytest.raises(InvalidInputError, match="different lengths"):
        kfold_accuracy(SCORES, LABELS, [0, 1])
    with pytest.raises(InvalidInputError, match="integer"):
        kfold_accuracy(SCORES, LABELS, [0.5] * 8)


def test_identification_validation() -> None:
    bad: list[tuple[object, object, object]] = [
        (np.asarray(SIM_CMC).T, GALLERY, ["a", "b", "c", "d"]),  # transposed
        ([[0.1, float("nan")]], ["A"], ["A", "B"]),  # NaN
        ([[0.1, 0.2]], ["A"], ["B", "C"]),  # no known probe
        ([[0.1, 0.2]], ["A"], [1, 2]),  # mixed label kinds
        ([[0.1, 0.2]], [], ["A", "B"]),  # empty gallery
    ]
    for sim, gallery, probes in bad:
        with pytest.raises(InvalidInputError) as info:
            cmc(sim, gallery, probes)  # type: ignore[arg-type]
        assert info.value.code == "invalid_input"
    with pytest.raises(InvalidInputError, match="transposed"):
        cmc(np.asarray(SIM_CMC).T, GALLERY, ["a", "b", "c", "d"])
    with pytest.raises(InvalidInputError, match="unknown probes"):
        dir_at_fpir([[0.9]], ["A"], ["A"], 0.1)
    with pytest.raises(InvalidInputError):
        cmc(SIM_CMC, GALLERY, PROBES, max_rank=0)
    with pytest.raises(InvalidInputError):
        rank_k([0.5, 1.0], 3)


def test_roc_dataclass_checks_shapes() -> None:
    with pytest.raises(InvalidInputError):
        Roc(np.zeros(3), np.zeros(2), np.zeros(3))


def test_agrees_with_scikit_learn_on_tied_scores() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    labels = rng.random(2000) < 0.4
    scores = np.round(rng.normal(size=2000) + labels, 1)  # heavy ties
    ours = roc_curve(scores, labels)
    fpr, tpr, _ = sk.roc_curve(labels, scores, drop_intermediate=False)
    assert np.allclose(ours.fpr, fpr) and np.allclose(ours.tpr, tpr)
    assert roc_auc(ours) == pytest.approx(sk.roc_auc_score(labels, scores))
