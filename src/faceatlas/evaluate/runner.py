"""Run evaluation protocols end to end: embed images (with a resumable cache), score pairs, identify probes."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError, InvalidInputError
from ..models import PREPROCESSING_VERSION
from ..pipeline import EMBEDDING, FaceRequest
from ..types import Box, Detection
from .metrics import (
    cmc,
    dir_at_fpir,
    eer,
    kfold_accuracy,
    rank_k,
    roc_auc,
    roc_curve,
    tar_at_far,
)
from .protocols import IdentificationSplit, Pair

log = logging.getLogger(__name__)

FARS = (1e-1, 1e-2, 1e-3)
FPIRS = (0.01, 0.1)
Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class TemplateSet:
    """Templates for a list of images (zero rows where no face was found), keyed by image path."""

    keys: tuple[str, ...]
    vectors: npt.NDArray[np.float32]
    found: npt.NDArray[np.bool_]
    n_faces: npt.NDArray[np.int32]
    model_id: str
    seconds: float
    computed: int
    cached_seconds_per_image: float | None = None  # mean over the runs that filled the template cache

    def seconds_per_image(self) -> tuple[float | None, str | None]:
        """Seconds per embedded image and where it comes from ("this run", "cache", or None when unknown)."""
        if self.computed:
            return self.seconds / self.computed, "this run"
        if self.cached_seconds_per_image is not None:
            return self.cached_seconds_per_image, "cache"
        return None, None

    def index(self) -> dict[str, int]:
        """Row of each key."""
        return {k: i for i, k in enumerate(self.keys)}


def embed_images(
    atlas: Any,
    paths: Sequence[Path],
    *,
    keys: Sequence[str] | None = None,
    select: str = "central",
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    chunk: int = 32,
    head_batch: int | None = None,
) -> TemplateSet:
    """One template per image (the face chosen by ``select``), reusing and extending on-disk caches.

    Two caches live in ``cache_dir``: the chosen face's landmarks per detector configuration (shared by every
    embedder) and the templates per full pipeline configuration. ``chunk`` images go between cache saves and progress
    calls; the embedder sees ``head_batch`` faces per call (default: the pipeline's ``batch_faces()``).
    """
    step = atlas.batch_faces() if head_batch is None else head_batch
    keys = [str(p) for p in paths] if keys is None else list(keys)
    stamps = [_stamp(p) for p in paths]
    tcache = _cache_path("templates", _template_config(atlas, select), cache_dir)
    dcache = _cache_path("landmarks", _detector_config(atlas, select), cache_dir)
    cached = _load_cache(tcache)
    cached_dets = _load_cache(dcache)
    dim = atlas.embedder.dim
    vectors = np.zeros((len(paths), dim), np.float32)
    found = np.zeros(len(paths), bool)
    n_faces = np.zeros(len(paths), np.int32)
    todo = []
    for i, (k, st) in enumerate(zip(keys, stamps, strict=True)):
        hit = cached.get(k)
        if hit is not None and hit[0] == st and hit[1].shape == (dim,):
            vectors[i], found[i], n_faces[i] = hit[1], hit[2], hit[3]
        else:
            todo.append(i)
    start = time.perf_counter()
    done = len(paths) - len(todo)
    for n, s in enumerate(range(0, len(todo), chunk)):
        rows = todo[s : s + chunk]
        known = {}
        for r in rows:
            hit = cached_dets.get(keys[r])
            if hit is not None and hit[0] == stamps[r]:
                known[r] = hit
        for row, face, count, lms in _embed_chunk(atlas, [paths[i] for i in rows], rows, select, known, step):
            n_faces[row] = count
            if face is not None:
                vectors[row], found[row] = face, True
            cached_dets[keys[row]] = (stamps[row], lms, face is not None, count)
        done += len(rows)
        if progress:
            progress(done, len(paths))
        last = s + chunk >= len(todo)
        if n % 16 == 15 or last:
            finished = todo[: s + chunk]
            for i in finished:
                cached[keys[i]] = (stamps[i], vectors[i].copy(), bool(found[i]), int(n_faces[i]))
            if tcache is not None:
                _save_cache(tcache, cached)
            if dcache is not None:
                _save_cache(dcache, cached_dets)
    seconds = time.perf_counter() - start
    per_image = _record_timing(tcache, seconds, len(todo))
    return TemplateSet(tuple(keys), vectors, found, n_faces, atlas.model_id, seconds, len(todo), per_image)


def _record_timing(tcache: Path | None, seconds: float, computed: int) -> float | None:
    """Add this run's embedding time to the template cache's timing file; return its seconds per image."""
    if tcache is None:
        return seconds / computed if computed else None
    import json

    path = tcache.with_suffix(".timing.json")
    try:
        total = json.loads(path.read_text()) if path.is_file() else {}
        secs, images = float(total.get("seconds", 0.0)), int(total.get("images", 0))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable timing file %s: %s", path, exc)
        secs, images = 0.0, 0
    if computed:
        secs, images = secs + seconds, images + computed
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"seconds": round(secs, 3), "images": images}))
        except OSError as exc:
            log.warning("cannot write timing file %s: %s", path, exc)
    return secs / images if images else None


def prefill_flip_caches(
    plain: Any,
    flipped: Any,
    paths: Sequence[Path],
    *,
    keys: Sequence[str],
    select: str = "central",
    cache_dir: Path,
    progress: Progress | None = None,
    chunk: int = 32,
) -> int:
    """Fill the template caches of a model and of its ``+flip`` twin in one pass (each crop is embedded once).

    Landmarks come from the shared landmark cache, or are detected and added to it. Returns how many images were
    embedded. Both templates come from the embedder's own ``embed_crops_both``.
    """
    emb = plain.embedder
    if emb.model_id + "+flip" != flipped.embedder.model_id:
        raise InvalidInputError("invalid_input", "prefill needs a single model and its '+flip' twin")
    stamps = [_stamp(p) for p in paths]
    caches = [_cache_path("templates", _template_config(a, select), cache_dir) for a in (plain, flipped)]
    dcache = _cache_path("landmarks", _detector_config(plain, select), cache_dir)
    loaded = [_load_cache(c) for c in caches]
    dets = _load_cache(dcache)
    todo = [i for i, (k, st) in enumerate(zip(keys, stamps, strict=True)) if any(k not in c or c[k][0] != st for c in loaded)]
    for n, s in enumerate(range(0, len(todo), chunk)):
        rows = todo[s : s + chunk]
        crops, owners = [], []
        for r in rows:
            img, (lms, ok) = _landmarks(plain, paths[r], keys[r], stamps[r], dets, select)
            if ok and img is not None:
                crops.append((img, _detection(lms)))
                owners.append(r)
        step = plain.batch_faces()
        parts = [plain.embed_views(crops[s : s + step]) for s in range(0, len(crops), step)]
        views = [np.stack([t.vector for p in parts for t in p[v]]) if crops else np.zeros((0, emb.dim), np.float32)
                 for v in (0, 1)]
        by_row = {r: j for j, r in enumerate(owners)}
        for cache, unit in zip(loaded, views, strict=True):
            for r in rows:
                j = by_row.get(r)
                vec = unit[j] if j is not None else np.zeros(emb.dim, np.float32)
                cache[keys[r]] = (stamps[r], vec, j is not None, int(dets[keys[r]][3]))
        if progress:
            progress(s + len(rows), len(todo))
        if n % 16 == 15 or s + chunk >= len(todo):
            for path, cache in zip((*caches, dcache), (*loaded, dets), strict=True):
                assert path is not None
                _save_cache(path, cache)
    return len(todo)


def _landmarks(
    atlas: Any, path: Path, key: str, stamp: str, dets: dict[str, tuple[str, Any, bool, int]], select: str
) -> tuple[Any, tuple[Any, bool]]:
    """The loaded image and the chosen face's landmarks (from the cache, or detected and cached)."""
    try:
        img = atlas.load(path)
    except FaceAtlasError as exc:
        log.warning("%s: %s", path, exc)
        dets[key] = (stamp, np.zeros((5, 2), np.float32), False, 0)
        return None, (None, False)
    hit = dets.get(key)
    if hit is None or hit[0] != stamp:
        result = atlas.run(img, _chosen_face(select))
        lms = result.faces[0].landmarks if result.faces else np.zeros((5, 2))
        hit = (stamp, np.asarray(lms, np.float32), bool(result.faces), result.detected)
        dets[key] = hit
    return img, (hit[1], hit[2])


def seed_template_cache(atlas: Any, ts: TemplateSet, paths: Sequence[Path], *, cache_dir: Path, select: str = "central") -> None:
    """Store templates computed elsewhere (e.g. an ensemble fused from its members' cached templates) as the atlas's."""
    path = _cache_path("templates", _template_config(atlas, select), cache_dir)
    assert path is not None
    cached = _load_cache(path)
    for key, p, vec, ok, count in zip(ts.keys, paths, ts.vectors, ts.found, ts.n_faces, strict=True):
        cached[key] = (_stamp(p), vec, bool(ok), int(count))
    _save_cache(path, cached)


def _embed_chunk(
    atlas: Any, paths: list[Path], rows: list[int], select: str, known: dict[int, tuple[str, Any, bool, int]],
    step: int,
) -> list[tuple[int, Any, int, Any]]:
    """Embed the selected face of each image (landmarks from ``known`` when cached, else detected), ``step`` per call.

    Returns (row, template or None, face count, landmarks of the chosen face or zeros).
    """
    faces, owners, counts, marks = [], [], [], []
    for path, row in zip(paths, rows, strict=True):
        lms = np.zeros((5, 2), np.float32)
        try:
            img = atlas.load(path)
            if row in known:
                _, lms, ok, count = known[row]
                has_face = bool(ok)
            else:
                result = atlas.run(img, _chosen_face(select))
                count, has_face = result.detected, bool(result.faces)
                if result.faces:
                    lms = result.faces[0].landmarks
        except FaceAtlasError as exc:
            log.warning("%s: %s", path, exc)
            count, has_face = 0, False
        counts.append(int(count))
        marks.append(np.asarray(lms, np.float32))
        if has_face:
            faces.append((img, _detection(lms)))
            owners.append(len(counts) - 1)
    templates = [t for s in range(0, len(faces), step)
                 for t in atlas.run_heads(faces[s : s + step], (EMBEDDING,))[EMBEDDING]]
    by_owner = dict(zip(owners, (t.vector for t in templates), strict=True))
    return [(row, by_owner.get(j), counts[j], marks[j]) for j, row in enumerate(rows)]


def _chosen_face(select: str) -> FaceRequest:
    """Detection only, keeping the face the protocol's selection policy picks."""
    return FaceRequest(faces="one", select=select, heads=())  # type: ignore[arg-type]


def _detection(landmarks: Any) -> Detection:
    """A Detection standing for cached landmarks (the heads only read the landmarks)."""
    lms = np.asarray(landmarks, np.float32)
    (x1, y1), (x2, y2) = lms.min(axis=0), lms.max(axis=0)
    return Detection(Box(float(x1), float(y1), float(x2), float(y2)), 1.0, lms)


def _stamp(path: Path) -> str:
    """A digest of the file's bytes: when they change, a cached template is recomputed (copies and re-mounts keep it)."""
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=12).hexdigest()
    except OSError:
        return "missing"


def _detector_config(atlas: Any, select: str) -> list[str]:
    """What decides which face (and landmarks) an image yields."""
    det = atlas.detector
    return [atlas.detector_name, det.runtime_sha256, det.POLICY_VERSION, f"{atlas.det_score:.3f}", select, str(atlas.multiscale)]


def _template_config(atlas: Any, select: str) -> list[str]:
    """What decides an image's template."""
    emb = atlas.embedder
    return [emb.model_id, emb.model_sha256, *_detector_config(atlas, select), PREPROCESSING_VERSION]


def _cache_path(kind: str, parts: list[str], cache_dir: Path | None) -> Path | None:
    """Cache file for one configuration."""
    if cache_dir is None:
        return None
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return cache_dir / f"{kind}-{parts[0]}-{digest}.npz"


def _load_cache(path: Path | None) -> dict[str, tuple[str, Any, bool, int]]:
    """Cached rows by key: (stamp, vector, found, n_faces)."""
    if path is None or not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            return {
                str(k): (str(s), v, bool(f), int(n))
                for k, s, v, f, n in zip(z["keys"], z["stamps"], z["vectors"], z["found"], z["n_faces"], strict=True)
            }
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable template cache %s: %s", path, exc)
        return {}


def _save_cache(path: Path, cached: dict[str, tuple[str, Any, bool, int]]) -> None:
    """Write a cache file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items = list(cached.items())
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(
            tmp,
            keys=np.array([k for k, _ in items]),
            stamps=np.array([v[0] for _, v in items]),
            vectors=np.stack([np.asarray(v[1], np.float32) for _, v in items]),
            found=np.array([v[2] for _, v in items]),
            n_faces=np.array([v[3] for _, v in items], np.int32),
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- verification ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VerificationResult:
    """Pair scores and every verification metric of one run."""

    scores: npt.NDArray[np.float32]
    labels: npt.NDArray[np.bool_]
    folds: npt.NDArray[np.int64]
    failed: npt.NDArray[np.bool_]
    summary: dict[str, Any] = field(default_factory=dict)


def pair_scores(ts: TemplateSet, pairs: Sequence[Pair]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Cosine score of each pair and whether either face was missing (such pairs count as errors)."""
    idx = ts.index()
    try:
        a = np.array([idx[p.a] for p in pairs])
        b = np.array([idx[p.b] for p in pairs])
    except KeyError as exc:
        raise InvalidInputError("invalid_input", f"pair image {exc} was not embedded") from None
    scores = np.einsum("ij,ij->i", ts.vectors[a], ts.vectors[b]).astype(np.float32)
    failed = ~(ts.found[a] & ts.found[b])
    return scores, failed


def evaluate_verification(ts: TemplateSet, pairs: Sequence[Pair], threshold: float | None = None) -> VerificationResult:
    """k-fold accuracy (threshold from the other folds), ROC AUC, EER, TAR@FAR and the misclassified pairs."""
    scores, failed = pair_scores(ts, pairs)
    labels = np.array([p.same for p in pairs], bool)
    folds = np.array([p.fold for p in pairs], np.int64)
    # A pair whose face is missing is an error whatever the threshold: push its score to the wrong side.
    forced = scores.copy()
    forced[failed & labels] = -2.0
    forced[failed & ~labels] = 2.0
    summary: dict[str, Any] = {
        "pairs": len(pairs),
        "genuine": int(labels.sum()),
        "impostor": int((~labels).sum()),
        "failed_to_detect_pairs": int(failed.sum()),
        "failed_to_detect_images": int((~ts.found).sum()),
        "model_id": ts.model_id,
    }
    if len(np.unique(folds)) > 1:
        kf = kfold_accuracy(forced, labels, folds)
        summary.update(
            accuracy_mean=kf.mean,
            accuracy_std=kf.std,
            fold_accuracies=[float(x) for x in kf.accuracies],
            fold_thresholds=[float(x) for x in kf.thresholds],
            threshold_mean=float(np.mean(kf.thresholds)),
            misclassified=[_pair_dict(pairs[i], float(scores[i]), bool(failed[i])) for i in kf.misclassified],
        )
    if threshold is not None:
        accept = forced >= threshold
        summary["threshold"] = threshold
        summary["accuracy_at_threshold"] = float((accept == labels).mean())
        summary["fmr_at_threshold"] = float(accept[~labels].mean()) if (~labels).any() else None
        summary["fnmr_at_threshold"] = float((~accept[labels]).mean()) if labels.any() else None
    roc = roc_curve(forced, labels)
    e = eer(forced, labels)
    summary["roc_auc"] = roc_auc(roc)
    summary["eer"] = e.eer
    summary["eer_threshold"] = e.threshold
    summary["tar_at_far"] = {}
    for far in FARS:
        t = tar_at_far(forced, labels, far)
        summary["tar_at_far"][f"{far:g}"] = {
            "tar": None if not t.resolvable else t.tar,
            "threshold": None if not t.resolvable else t.threshold,
            "far_achieved": None if not t.resolvable else t.far_achieved,
            "resolvable": t.resolvable,
            "note": "" if t.resolvable else f"below 1/{t.n_impostors} impostor pairs: the data cannot resolve it",
        }
    return VerificationResult(scores, labels, folds, failed, summary)


def _pair_dict(p: Pair, score: float, failed: bool) -> dict[str, Any]:
    """A misclassified pair for reports."""
    return {"a": p.a, "b": p.b, "same": p.same, "fold": p.fold, "score": round(score, 4), "no_face": failed}


# -- identification ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class IdentificationResult:
    """CMC curve and open-set rates of one identification run."""

    cmc: npt.NDArray[np.float64]
    summary: dict[str, Any]


def evaluate_identification(ts: TemplateSet, split: IdentificationSplit, max_rank: int = 20) -> IdentificationResult:
    """Closed-set rank-k / CMC and open-set DIR at FPIR, with faceless images counted as failures."""
    idx = ts.index()
    g_rows = np.array([idx[p] for _, p in split.gallery])
    probes = list(split.known_probes) + list(split.unknown_probes)
    p_rows = np.array([idx[p] for _, p in probes])
    g_labels = [name for name, _ in split.gallery]
    p_labels = [name for name, _ in probes]
    sim = ts.vectors[g_rows] @ ts.vectors[p_rows].T
    # A faceless probe or gallery image has a zero template: similarity 0 to everything, so it never matches.
    curve = cmc(sim, g_labels, p_labels, max_rank=max_rank)
    summary: dict[str, Any] = {
        "gallery": len(g_rows),
        "known_probes": len(split.known_probes),
        "unknown_probes": len(split.unknown_probes),
        "gallery_without_face": int((~ts.found[g_rows]).sum()),
        "probes_without_face": int((~ts.found[p_rows]).sum()),
        "rank1": rank_k(curve, 1),
        "rank5": rank_k(curve, 5) if len(curve) >= 5 else None,
        "cmc": [float(x) for x in curve],
        "dir_at_fpir": {},
    }
    for fpir in FPIRS:
        if not split.unknown_probes or not split.known_probes:
            summary["dir_at_fpir"][f"{fpir:g}"] = {"dir": None, "threshold": None, "fpir_achieved": None,
                                                   "resolvable": False, "note": "needs both known and unknown probes"}
            continue
        d = dir_at_fpir(sim, g_labels, p_labels, fpir)
        summary["dir_at_fpir"][f"{fpir:g}"] = {
            "dir": None if not d.resolvable else d.dir,
            "threshold": None if not d.resolvable else d.threshold,
            "fpir_achieved": None if not d.resolvable else d.fpir_achieved,
            "resolvable": d.resolvable,
        }
    return IdentificationResult(curve, summary)


# -- groups ------------------------------------------------------------------------------------------------------


def group_rates(
    pairs: Sequence[Pair], scores: npt.NDArray[np.float32], failed: npt.NDArray[np.bool_],
    person_group: dict[str, str], threshold: float,
) -> dict[str, Any]:
    """FMR and FNMR per group at one threshold, and the worst/best ratio (a fairness report).

    A pair belongs to a group when both people are in it; cross-group impostor pairs are reported apart.
    """
    per: dict[str, dict[str, list[bool]]] = {}
    for p, s, f in zip(pairs, scores, failed, strict=True):
        ga, gb = person_group.get(_person(p.a)), person_group.get(_person(p.b))
        group = ga if ga == gb and ga is not None else "(cross-group)"
        accept = bool(s >= threshold) and not f
        bucket = per.setdefault(group, {"fm": [], "fnm": []})
        (bucket["fnm"] if p.same else bucket["fm"]).append(not accept if p.same else accept)
    out: dict[str, Any] = {"threshold": threshold, "groups": {}}
    for g, b in sorted(per.items()):
        out["groups"][g] = {
            "genuine_pairs": len(b["fnm"]),
            "impostor_pairs": len(b["fm"]),
            "fmr": float(np.mean(b["fm"])) if b["fm"] else None,
            "fnmr": float(np.mean(b["fnm"])) if b["fnm"] else None,
        }
    for metric in ("fmr", "fnmr"):
        vals = [v[metric] for g, v in out["groups"].items() if g != "(cross-group)" and v[metric] is not None]
        if len(vals) >= 2 and min(vals) > 0:
            out[f"{metric}_worst_to_best"] = max(vals) / min(vals)
        elif len(vals) >= 2:
            out[f"{metric}_worst_to_best"] = None if max(vals) == 0 else float("inf")
    return out


def _person(path: str) -> str:
    """The person of an image: its parent folder's name."""
    return Path(path).parent.name
