"""Verification and identification metrics computed from similarity scores (pure numpy, no I/O).

Conventions shared by every function here:

* a higher score means "more similar";
* a pair or probe is *accepted* when ``score >= threshold``;
* verification labels are boolean-like (``True``/``1`` = genuine, same person; ``False``/``0`` = impostor);
* identification similarity matrices have shape ``(n_gallery, n_probes)``: one row per gallery entry,
  one column per probe, matching the argument order ``(similarity, gallery_labels, probe_labels)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from faceatlas.errors import InvalidInputError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "DirAtFpir",
    "Eer",
    "KFoldAccuracy",
    "Roc",
    "TarAtFar",
    "accuracy_at_threshold",
    "best_threshold_accuracy",
    "cmc",
    "dir_at_fpir",
    "eer",
    "kfold_accuracy",
    "rank_k",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
]

# Relative slack when comparing an empirical rate k/n with a requested rate, so that e.g. 6/6000 counts as <= 1e-3.
_RATE_SLACK = 1e-9


# --------------------------------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------------------------------


def _readonly(values: Any, dtype: type[np.generic]) -> Any:
    """Return a read-only 1-D copy of ``values`` with the given dtype."""
    arr = np.array(values, dtype=dtype, copy=True).reshape(-1)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Roc:
    """A ROC curve: false/true accept rates at each distinct threshold, starting at (0, 0) for threshold +inf."""

    fpr: FloatArray
    tpr: FloatArray
    thresholds: FloatArray

    def __post_init__(self) -> None:
        """Store the curve as read-only float64 arrays of equal length."""
        fpr = _readonly(self.fpr, np.float64)
        tpr = _readonly(self.tpr, np.float64)
        thr = _readonly(self.thresholds, np.float64)
        if not (fpr.shape == tpr.shape == thr.shape) or fpr.size < 2:
            raise _bad("Roc needs fpr, tpr and thresholds of the same length (at least 2 points)")
        object.__setattr__(self, "fpr", fpr)
        object.__setattr__(self, "tpr", tpr)
        object.__setattr__(self, "thresholds", thr)


class Eer(NamedTuple):
    """Equal error rate and the score threshold where it occurs (unpacks as ``(eer, threshold)``)."""

    eer: float
    threshold: float


@dataclass(frozen=True)
class TarAtFar:
    """True accept rate at a requested false accept rate, or ``resolvable=False`` when the data cannot tell."""

    tar: float
    threshold: float
    far: float
    far_achieved: float
    resolvable: bool
    n_impostors: int
    n_genuine: int


@dataclass(frozen=True, eq=False)
class KFoldAccuracy:
    """Cross-validated verification accuracy: per-fold results, mean, population std and misclassified pairs."""

    folds: IntArray
    accuracies: FloatArray
    thresholds: FloatArray
    mean: float
    std: float
    misclassified: IntArray

    def __post_init__(self) -> None:
        """Store the per-fold results as read-only arrays."""
        object.__setattr__(self, "folds", _readonly(self.folds, np.int64))
        object.__setattr__(self, "accuracies", _readonly(self.accuracies, np.float64))
        object.__setattr__(self, "thresholds", _readonly(self.thresholds, np.float64))
        object.__setattr__(self, "misclassified", _readonly(self.misclassified, np.int64))


@dataclass(frozen=True)
class DirAtFpir:
    """Open-set detection-and-identification rate at a requested false positive identification rate."""

    dir: float
    threshold: float
    fpir: float
    fpir_achieved: float
    resolvable: bool
    n_known: int
    n_unknown: int
    n_identities: int
    rank1: float


# --------------------------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------------------------


def _bad(message: str, **details: Any) -> InvalidInputError:
    """Build the ``invalid_input`` error used for every bad argument in this module."""
    return InvalidInputError("invalid_input", message, **details)


def _array(values: Any, name: str) -> np.ndarray[Any, Any]:
    """Convert ``values`` to a numpy array, turning ragged or odd input into an ``invalid_input`` error."""
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{name} must be a flat sequence or numpy array") from exc


def _scores(values: Any, name: str = "scores") -> FloatArray:
    """Validate scores: a non-empty 1-D array of finite numbers, returned as float64."""
    raw = _array(values, name)
    if raw.dtype.kind not in "iuf":
        raise _bad(f"{name} must be numbers, got dtype {raw.dtype}")
    if raw.ndim != 1:
        raise _bad(f"{name} must be 1-D, got shape {raw.shape}")
    if raw.size == 0:
        raise _bad(f"{name} is empty")
    arr = raw.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise _bad(f"{name} contains NaN or infinite values")
    return arr


def _labels(values: Any, n: int, name: str = "labels") -> BoolArray:
    """Validate boolean-like labels (bool, or numbers that are all 0/1) of length ``n``."""
    raw = _array(values, name)
    if raw.ndim != 1:
        raise _bad(f"{name} must be 1-D, got shape {raw.shape}")
    if raw.size != n:
        raise _bad(f"scores and {name} have different lengths ({n} vs {raw.size})")
    if raw.dtype.kind == "b":
        return raw.astype(np.bool_, copy=False)
    if raw.dtype.kind in "iuf":
        if not np.isin(raw, (0, 1)).all():
            raise _bad(f"{name} must be boolean-like (True/False or 1/0)")
        return raw != 0
    raise _bad(f"{name} must be boolean-like (True/False or 1/0), got dtype {raw.dtype}")


def _pairs(scores: Any, labels: Any, need_both: bool = True) -> tuple[FloatArray, BoolArray]:
    """Validate a (scores, labels) verification set; optionally require both genuine and impostor pairs."""
    s = _scores(scores)
    y = _labels(labels, s.size)
    if need_both:
        n_gen = int(np.count_nonzero(y))
        if n_gen == 0 or n_gen == y.size:
            raise _bad("need at least one genuine and one impostor pair")
    return s, y


def _rate(value: Any, name: str) -> float:
    """Validate a rate argument (FAR, FPIR): a real number in (0, 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _bad(f"{name} must be a number in (0, 1]")
    rate = float(value)
    if not (0.0 < rate <= 1.0):
        raise _bad(f"{name} must be in (0, 1], got {rate!r}")
    return rate


def _resolvable(rate: float, n_negatives: int) -> bool:
    """Tell whether ``n_negatives`` samples can resolve a rate this small (rate >= 1/n)."""
    return rate * n_negatives >= 1.0 - _RATE_SLACK


def _operating_point(neg_sorted: FloatArray, candidates: FloatArray, rate: float) -> tuple[float, float]:
    """Smallest candidate threshold whose negative accept rate is <= ``rate``, with the rate it achieves."""
    n = neg_sorted.size
    accepted = n - np.searchsorted(neg_sorted, candidates, side="left")
    ok = np.flatnonzero(accepted <= rate * n * (1.0 + _RATE_SLACK))
    if ok.size == 0:
        # Even the highest candidate accepts too many negatives (ties at the top): accept nothing.
        return float(np.nextafter(candidates[-1], np.inf)), 0.0
    i = int(ok[0])
    return float(candidates[i]), float(accepted[i]) / n


# --------------------------------------------------------------------------------------------------------------------
# Verification (1:1)
# --------------------------------------------------------------------------------------------------------------------


def roc_curve(scores: npt.ArrayLike, labels: npt.ArrayLike) -> Roc:
    """ROC curve of genuine vs impostor scores, one point per distinct score (tied pairs move together)."""
    s, y = _pairs(scores, labels)
    order = np.argsort(-s, kind="stable")
    s_desc = s[order]
    y_desc = y[order]
    # Index of the last element of each run of equal scores: all pairs sharing a score are accepted together.
    last = np.r_[np.flatnonzero(np.diff(s_desc)), s_desc.size - 1]
    tps = np.cumsum(y_desc, dtype=np.int64)[last]
    fps = (last + 1) - tps
    n_gen = int(tps[-1])
    n_imp = int(fps[-1])
    return Roc(
        fpr=np.r_[0.0, fps / n_imp],
        tpr=np.r_[0.0, tps / n_gen],
        thresholds=np.r_[np.inf, s_desc[last]],
    )


def roc_auc(roc: Roc) -> float:
    """Area under a ROC curve by the trapezoid rule."""
    if not isinstance(roc, Roc):
        raise _bad("roc_auc expects a Roc from roc_curve")
    dx = np.diff(roc.fpr)
    return float(np.sum(dx * (roc.tpr[1:] + roc.tpr[:-1]) / 2.0))


def eer(scores: npt.ArrayLike, labels: npt.ArrayLike) -> Eer:
    """Equal error rate (FAR = FRR) interpolated linearly between ROC points, with its threshold.

    The threshold is interpolated linearly between the two bracketing ROC thresholds; when the crossing lies on the
    first segment (from the +inf start point), the first finite threshold (the highest score) is returned.
    """
    roc = roc_curve(scores, labels)
    fpr, fnr, thr = roc.fpr, 1.0 - roc.tpr, roc.thresholds
    diff = fpr - fnr  # non-decreasing from -1 (at +inf) to +1 (at the lowest score)
    i = int(np.flatnonzero(diff >= 0.0)[0])
    if diff[i] == 0.0:
        return Eer(float(fpr[i]), float(thr[i]))
    alpha = -diff[i - 1] / (diff[i] - diff[i - 1])
    value = fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1])
    if math.isinf(thr[i - 1]):
        threshold = float(thr[i])
    else:
        threshold = float(thr[i - 1] + alpha * (thr[i] - thr[i - 1]))
    return Eer(float(value), threshold)


def tar_at_far(scores: npt.ArrayLike, labels: npt.ArrayLike, far: float) -> TarAtFar:
    """True accept rate at the smallest observed-score threshold whose empirical FAR is <= ``far``.

    Empirical FAR(t) is the fraction of impostor scores >= t. When ``far < 1/n_impostors`` the data cannot resolve
    that rate: the result has ``resolvable=False`` and NaN for ``tar``, ``threshold`` and ``far_achieved``.
    """
    s, y = _pairs(scores, labels)
    rate = _rate(far, "far")
    genuine = s[y]
    impostor = np.sort(s[~y])
    if not _resolvable(rate, impostor.size):
        nan = float("nan")
        return TarAtFar(nan, nan, rate, nan, False, int(impostor.size), int(genuine.size))
    threshold, achieved = _operating_point(impostor, np.unique(s), rate)
    tar = float(np.count_nonzero(genuine >= threshold)) / genuine.size
    return TarAtFar(tar, threshold, rate, achieved, True, int(impostor.size), int(genuine.size))


def accuracy_at_threshold(scores: npt.ArrayLike, labels: npt.ArrayLike, threshold: float) -> float:
    """Fraction of pairs classified correctly when accepting ``score >= threshold`` as genuine."""
    s, y = _pairs(scores, labels, need_both=False)
    t = float(threshold)
    if math.isnan(t):
        raise _bad("threshold is NaN")
    return float(np.count_nonzero((s >= t) == y)) / s.size


def _best_threshold(s: FloatArray, y: BoolArray) -> tuple[float, float]:
    """Accuracy-maximising threshold (lowest one on ties) and its accuracy, on validated arrays."""
    u = np.unique(s)
    genuine = np.sort(s[y])
    impostor = np.sort(s[~y])
    # Candidate k < len(u) accepts every score >= u[k]; candidate len(u) rejects everything.
    gen_rejected = np.searchsorted(genuine, u, side="left")
    imp_rejected = np.searchsorted(impostor, u, side="left")
    correct = np.r_[(genuine.size - gen_rejected) + imp_rejected, impostor.size]
    k = int(np.argmax(correct))
    if k == 0:
        threshold = float(u[0])
    elif k == u.size:
        threshold = float(np.nextafter(u[-1], np.inf))
    else:
        lo, hi = float(u[k - 1]), float(u[k])
        mid = lo + (hi - lo) / 2.0
        threshold = mid if mid > lo else hi
    return threshold, float(correct[k]) / s.size


def best_threshold_accuracy(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Threshold that maximises accuracy, at the midpoint between consecutive distinct scores.

    Ties between equally accurate thresholds go to the lowest. If accepting everything is best the lowest score is
    returned; if rejecting everything is best, the next float above the highest score.
    """
    s, y = _pairs(scores, labels, need_both=False)
    return _best_threshold(s, y)[0]


def _fold_ids(folds: Any, n: int) -> IntArray:
    """Validate per-pair fold ids: integers, one per pair, at least two distinct folds."""
    raw = _array(folds, "folds")
    if raw.ndim != 1:
        raise _bad(f"folds must be 1-D, got shape {raw.shape}")
    if raw.size != n:
        raise _bad(f"scores and folds have different lengths ({n} vs {raw.size})")
    integral = raw.dtype.kind in "iu" or (
        raw.dtype.kind == "f" and bool(np.isfinite(raw).all()) and np.array_equal(raw, np.round(raw))
    )
    if not integral:
        raise _bad("folds must be integer fold ids")
    ids = raw.astype(np.int64)
    if np.unique(ids).size < 2:
        raise _bad("k-fold evaluation needs at least two distinct folds")
    return ids


def kfold_accuracy(scores: npt.ArrayLike, labels: npt.ArrayLike, folds: npt.ArrayLike) -> KFoldAccuracy:
    """LFW View-2 style accuracy: per fold, pick the threshold on the other folds, measure on the held-out fold.

    ``std`` is the population standard deviation (ddof=0) of the per-fold accuracies, as in the usual LFW
    ``mean +- std`` reporting. ``misclassified`` holds the sorted indices of pairs wrong in their held-out fold.
    """
    s, y = _pairs(scores, labels, need_both=False)
    ids = _fold_ids(folds, s.size)
    fold_values = np.unique(ids)
    accuracies = np.empty(fold_values.size, dtype=np.float64)
    thresholds = np.empty(fold_values.size, dtype=np.float64)
    wrong: list[IntArray] = []
    for j, fold in enumerate(fold_values):
        test = ids == fold
        threshold, _ = _best_threshold(s[~test], y[~test])
        correct = (s[test] >= threshold) == y[test]
        thresholds[j] = threshold
        accuracies[j] = float(np.count_nonzero(correct)) / correct.size
        wrong.append(np.flatnonzero(test)[~correct])
    misclassified = np.sort(np.concatenate(wrong)) if wrong else np.empty(0, dtype=np.int64)
    return KFoldAccuracy(
        folds=fold_values,
        accuracies=accuracies,
        thresholds=thresholds,
        mean=float(accuracies.mean()),
        std=float(accuracies.std(ddof=0)),
        misclassified=misclassified,
    )


# --------------------------------------------------------------------------------------------------------------------
# Identification (1:N)
# --------------------------------------------------------------------------------------------------------------------


def _identity_labels(values: Any, name: str) -> np.ndarray[Any, Any]:
    """Validate identity labels: a non-empty 1-D array of strings or integers."""
    raw = _array(values, name)
    if raw.ndim != 1:
        raise _bad(f"{name} must be 1-D, got shape {raw.shape}")
    if raw.size == 0:
        raise _bad(f"{name} is empty")
    if raw.dtype.kind not in "iuUSO":
        raise _bad(f"{name} must be strings or integers, got dtype {raw.dtype}")
    return raw


@dataclass(frozen=True, eq=False)
class _Ranked:
    """Per-probe ranking facts shared by CMC and DIR computations."""

    top: FloatArray
    ranks: IntArray
    known: BoolArray
    n_identities: int


def _rank_probes(similarity: Any, gallery_labels: Any, probe_labels: Any) -> _Ranked:
    """Validate an identification problem and rank every probe's true identity among gallery identities."""
    g = _identity_labels(gallery_labels, "gallery_labels")
    p = _identity_labels(probe_labels, "probe_labels")
    sim = _array(similarity, "similarity")
    if sim.dtype.kind not in "iuf" or sim.ndim != 2:
        raise _bad(f"similarity must be a 2-D numeric matrix, got dtype {sim.dtype} and shape {sim.shape}")
    if sim.shape != (g.size, p.size):
        hint = " (it looks transposed)" if sim.shape == (p.size, g.size) else ""
        raise _bad(f"similarity must have shape (n_gallery, n_probes) = {(g.size, p.size)}, got {sim.shape}{hint}")
    if sim.dtype.kind != "f":
        sim = sim.astype(np.float64)
    if not np.isfinite(sim).all():
        raise _bad("similarity contains NaN or infinite values")
    if "O" not in (g.dtype.kind, p.dtype.kind) and (g.dtype.kind in "US") != (p.dtype.kind in "US"):
        raise _bad("gallery_labels and probe_labels must be of the same kind (both strings or both integers)")
    try:
        _, inverse = np.unique(np.concatenate([g, p]), return_inverse=True)
    except TypeError as exc:
        raise _bad("identity labels must be mutually comparable (strings or integers)") from exc
    g_id = inverse[: g.size]
    p_id = inverse[g.size :]

    # One row per gallery identity: the best score over that identity's gallery entries.
    order = np.argsort(g_id, kind="stable")
    sorted_ids = g_id[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    if starts.size == g.size:
        per_identity = sim
        row_ids = g_id
    else:
        per_identity = np.maximum.reduceat(sim[order], starts, axis=0)
        row_ids = sorted_ids[starts]
    lookup = np.full(int(inverse.max()) + 1, -1, dtype=np.int64)
    lookup[row_ids] = np.arange(row_ids.size)
    probe_row = lookup[p_id]
    known = probe_row >= 0

    cols = np.flatnonzero(known)
    true_score = np.full(p.size, np.inf, dtype=per_identity.dtype)
    true_score[cols] = per_identity[probe_row[cols], cols]
    # Pessimistic rank: identities scoring >= the true one (itself included); ties count against the probe.
    ranks = np.count_nonzero(per_identity >= true_score[None, :], axis=0).astype(np.int64)
    top = per_identity.max(axis=0).astype(np.float64)
    return _Ranked(top=top, ranks=ranks, known=known, n_identities=int(row_ids.size))


def cmc(
    similarity: npt.ArrayLike,
    gallery_labels: npt.ArrayLike,
    probe_labels: npt.ArrayLike,
    max_rank: int = 20,
) -> FloatArray:
    """Closed-set cumulative match characteristic: element k-1 is the rank-k identification rate.

    ``similarity`` has shape ``(n_gallery, n_probes)``. Several gallery entries may share an identity (the best one
    counts). Probes whose identity is absent from the gallery are excluded from the denominator. Ties between the
    true identity and another count against the probe.
    """
    if isinstance(max_rank, (bool, np.bool_)) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise _bad("max_rank must be a positive integer")
    ranked = _rank_probes(similarity, gallery_labels, probe_labels)
    n_known = int(np.count_nonzero(ranked.known))
    if n_known == 0:
        raise _bad("no probe identity is present in the gallery")
    n_excluded = int(ranked.known.size) - n_known
    if n_excluded:
        logger.debug("cmc: %d probe(s) with identities absent from the gallery excluded", n_excluded)
    counts = np.bincount(ranked.ranks[ranked.known], minlength=int(max_rank) + 1)[1 : int(max_rank) + 1]
    rates: FloatArray = np.cumsum(counts) / n_known
    return rates


def rank_k(cmc: npt.ArrayLike, k: int) -> float:
    """Rank-``k`` identification rate (k starts at 1) from a CMC array."""
    curve = _scores(cmc, "cmc")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= curve.size:
        raise _bad(f"k must be an integer in [1, {curve.size}]")
    return float(curve[int(k) - 1])


def dir_at_fpir(
    similarity: npt.ArrayLike,
    gallery_labels: npt.ArrayLike,
    probe_labels: npt.ArrayLike,
    fpir: float,
) -> DirAtFpir:
    """Open-set detection-and-identification rate at a false positive identification rate.

    Probes whose label is not in the gallery are unknown. The threshold is the smallest observed top score such that
    the fraction of unknown probes whose top score is >= it is <= ``fpir``. DIR is the fraction of known probes that
    are rank-1 correct (strictly, ties count as wrong) and whose top score is >= the threshold. When
    ``fpir < 1/n_unknown`` the result has ``resolvable=False`` and NaN for dir, threshold and fpir_achieved.
    """
    rate = _rate(fpir, "fpir")
    ranked = _rank_probes(similarity, gallery_labels, probe_labels)
    known = ranked.known
    n_known = int(np.count_nonzero(known))
    n_unknown = int(known.size) - n_known
    if n_known == 0:
        raise _bad("no probe identity is present in the gallery (DIR needs known probes)")
    if n_unknown == 0:
        raise _bad("every probe identity is in the gallery (FPIR needs unknown probes)")
    correct = known & (ranked.ranks == 1)
    rank1 = float(np.count_nonzero(correct)) / n_known
    if not _resolvable(rate, n_unknown):
        nan = float("nan")
        return DirAtFpir(nan, nan, rate, nan, False, n_known, n_unknown, ranked.n_identities, rank1)
    unknown_top = np.sort(ranked.top[~known])
    threshold, achieved = _operating_point(unknown_top, np.unique(ranked.top), rate)
    hits = int(np.count_nonzero(correct & (ranked.top >= threshold)))
    return DirAtFpir(
        hits / n_known, threshold, rate, achieved, True, n_known, n_unknown, ranked.n_identities, rank1
    )
