"""The attribute measurements of ``benchmarks/analyze.py``: gender/age, pose, eyes, expression order, speed."""

from __future__ import annotations

import argparse
import csv
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _common import RESULTS_DIR, progress

from faceatlas import FaceAtlas
from faceatlas.analysis import EXPRESSION_LABELS
from faceatlas.images import LoadedImage
from faceatlas.pipeline import DETECT, FaceRequest

DATA = Path(__file__).resolve().parent / "data"


def _atlas(args: argparse.Namespace) -> FaceAtlas:
    return FaceAtlas(models_dir=args.models, threads=args.threads)


def _images(args: argparse.Namespace) -> Path:
    return Path(args.data) / "lfw" / "images"


def _write(result: dict[str, Any], name: str) -> None:
    from analyze import write

    write(result, name)


def _sample(args: argparse.Namespace, n: int) -> list[Path]:
    """``n`` LFW images chosen with the run's seed."""
    paths = sorted(_images(args).glob("*/*.jpg"))
    return random.Random(args.seed).sample(paths, n)


def cmd_gender(args: argparse.Namespace) -> None:
    """Agreement with the looked-at labels of benchmarks/data/lfw_gender.csv (≤ 5 photos each) and age spread."""
    with (DATA / "lfw_gender.csv").open() as fh:
        labels = {r["person"]: r["gender"] for r in csv.DictReader(fh)}
    paths, truth = [], []
    for person, g in labels.items():
        for p in sorted((_images(args) / person).glob("*.jpg"))[:5]:
            paths.append(p)
            truth.append(g)
    fa = _atlas(args)
    req = FaceRequest(faces="one", heads=("gender", "age"))
    from faceatlas.analysis.attributes import GENDER_THRESHOLD as T

    held_out = {p for i, p in enumerate(labels) if i % 2 == 1}  # the threshold was chosen on the even rows
    p_male, ages, kept, people = [], [], [], []
    for i, res in enumerate(fa.iter_many(paths, req, chunk=16, errors="keep")):
        if not res.faces:
            continue
        g = res.faces[0].head("gender")
        p_male.append(gender_score(g, T))
        ages.append(res.faces[0].head("age").years)
        kept.append(truth[i])
        people.append(paths[i].parent.name)
    pm, y = np.array(p_male), np.array([t == "male" for t in kept])
    from sklearn.metrics import roc_auc_score

    per_person: dict[str, list[float]] = {}
    for person, v in zip(people, pm, strict=True):
        per_person.setdefault(person, []).append(float(v))
    person_ok = [(np.mean(v) >= T) == (labels[p] == "male") for p, v in per_person.items()]
    ho = np.array([p in held_out for p in people])
    age_arr = np.array(ages)
    decades = {f"{d}s": int(((age_arr >= d) & (age_arr < d + 10)).sum()) for d in range(0, 100, 10)}
    _write({
        "people": len(per_person), "images": len(pm), "female_images": int((~y).sum()), "male_images": int(y.sum()),
        "threshold": T,
        "agreement_images": float(((pm >= T) == y).mean()),
        "agreement_female": float((pm[~y] < T).mean()), "agreement_male": float((pm[y] >= T).mean()),
        "agreement_held_out_half": float(((pm[ho] >= T) == y[ho]).mean()), "held_out_images": int(ho.sum()),
        "agreement_at_0.5": float(((pm >= 0.5) == y).mean()),
        "agreement_people_mean_prob": float(np.mean(person_ok)),
        "auc": float(roc_auc_score(y, pm)),
        "age": {"median": float(np.median(age_arr)), "p5": float(np.percentile(age_arr, 5)),
                "p95": float(np.percentile(age_arr, 95)), "by_decade": decades,
                "median_female": float(np.median(age_arr[~y])), "median_male": float(np.median(age_arr[y]))},
    }, "analyze_gender")


def gender_score(g: Any, threshold: float) -> float:
    """The raw SSR-Net output (0 = female, 1 = male) back from a :class:`Gender` result."""
    if g.label == "male":
        return float(threshold + (g.probability - 0.5) * 2 * (1 - threshold))
    return float(threshold - (g.probability - 0.5) * 2 * threshold)


def _rotate(rgb: np.ndarray, angle: float) -> np.ndarray:
    """Rotate about the image centre by ``angle`` degrees (positive = counter-clockwise), edges replicated."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def cmd_pose(args: argparse.Namespace) -> None:
    """Roll tracks in-plane rotations while yaw stays put; yaw changes sign on mirrored images."""
    fa = _atlas(args)
    req = FaceRequest(faces="one", heads=("pose",))
    angles = (-30, -15, 15, 30)
    rows = []
    for path in _sample(args, args.pose_n):
        img = fa.load(path).rgb
        variants = [img, img[:, ::-1].copy(), *(_rotate(img, a) for a in angles)]
        res = fa.run_many([LoadedImage(v, str(path)) for v in variants], req, errors="keep")
        if any(not r.faces for r in res):
            continue
        rows.append([(p.yaw, p.pitch, p.roll) for p in (r.faces[0].head("pose") for r in res)])
    a = np.array(rows)  # images × variants × (yaw, pitch, roll)
    base, mirror = a[:, 0], a[:, 1]
    rot = a[:, 2:]
    d_roll = rot[:, :, 2] - base[:, None, 2]
    d_yaw = rot[:, :, 0] - base[:, None, 0]
    # cv2 positive angle = counter-clockwise; the model's roll grows clockwise, so expect d_roll = -angle.
    roll_err = d_roll + np.array(angles)[None, :]
    turned = np.abs(base[:, 0]) >= 10
    _write({
        "images": len(a),
        "in_plane": {str(ang): {"roll_change_mean": float(d_roll[:, i].mean()),
                                "roll_error_mae": float(np.abs(roll_err[:, i]).mean()),
                                "yaw_change_mae": float(np.abs(d_yaw[:, i]).mean())} for i, ang in enumerate(angles)},
        "roll_error_mae_all": float(np.abs(roll_err).mean()),
        "yaw_change_mae_all": float(np.abs(d_yaw).mean()),
        "mirror": {"faces_with_abs_yaw_ge_10": int(turned.sum()),
                   "yaw_sign_flipped": float((np.sign(base[turned, 0]) != np.sign(mirror[turned, 0])).mean()),
                   "yaw_plus_mirror_yaw_mae": float(np.abs(base[:, 0] + mirror[:, 0]).mean()),
                   "roll_plus_mirror_roll_mae": float(np.abs(base[:, 2] + mirror[:, 2]).mean())},
    }, "analyze_pose")


def close_eyes(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Paint both eyes shut: skin from just below each eye over the eye, then a dark lash line along the lid."""
    out = rgb.copy()
    for idx in (range(36, 42), range(42, 48)):
        eye = points[list(idx)]
        x1, y1 = eye.min(axis=0)
        x2, y2 = eye.max(axis=0)
        w = x2 - x1
        pad_x, pad_y = w * 0.25, w * 0.35
        t, b = int(min(y1, (eye[1, 1] + eye[2, 1]) / 2) - pad_y), int(y2 + pad_y * 0.6)
        left, right = int(x1 - pad_x), int(x2 + pad_x)
        h = b - t
        src = rgb[b + 1:b + 1 + h, left:right]  # the cheek just below
        if src.shape[0] != h or src.shape[1] != right - left or t < 0 or left < 0:
            continue
        mask = np.zeros(rgb.shape[:2], np.uint8)
        cv2.ellipse(mask, (int((left + right) / 2), int((t + b) / 2)), (int((right - left) / 2), int(h / 2)), 0, 0,
                    360, 255, -1)
        patch = out.copy()
        patch[t:b, left:right] = src
        soft = cv2.GaussianBlur(mask, (0, 0), max(w * 0.08, 1.0)).astype(np.float32)[..., None] / 255.0
        out = (out * (1 - soft) + patch * soft).astype(np.uint8)
        lid = np.array([eye[0], (eye[4] + eye[5]) / 2 * 0.5 + (eye[1] + eye[2]) / 2 * 0.5 + [0, w * 0.05], eye[3]])
        curve = cv2.approxPolyDP(lid.astype(np.int32).reshape(-1, 1, 2), 0, False)
        cv2.polylines(out, [curve], False, (40, 30, 25), max(1, int(round(w * 0.06))), cv2.LINE_AA)
    return out


def cmd_eyes(args: argparse.Namespace) -> None:
    """Open-eye probability on LFW faces as they are, and on the same faces with both eyes painted shut."""
    fa = _atlas(args)
    req = FaceRequest(faces="one", heads=("eyes", "landmarks68"))
    before, after, sheet = [], [], []
    for path in _sample(args, args.eyes_n):
        res = fa.run(path, req)
        if not res.faces:
            continue
        face = res.faces[0]
        img = fa.load(path).rgb
        shut = close_eyes(img, face.head("landmarks68").points)
        res2 = fa.run(LoadedImage(shut, str(path)), FaceRequest(faces="one", heads=("eyes",)))
        if not res2.faces:
            continue
        e0, e1 = face.head("eyes"), res2.faces[0].head("eyes")
        before.append((e0.left_open, e0.right_open))
        after.append((e1.left_open, e1.right_open))
        if len(sheet) < 12:
            x1, y1, x2, y2 = (int(v) for v in face.box.to_list())
            pair = [cv2.resize(im[max(y1, 0):y2, max(x1, 0):x2], (150, 150)) for im in (img, shut)]
            for im, e in zip(pair, (e0, e1), strict=True):
                cv2.putText(im, f"{e.left_open:.2f} {e.right_open:.2f}", (3, 14), 0, 0.45, (255, 255, 0), 1)
            sheet.append(np.hstack(pair))
    b, a = np.array(before), np.array(after)
    rows = [np.hstack(sheet[i:i + 4]) for i in range(0, len(sheet) - len(sheet) % 4, 4)]
    if rows:
        cv2.imwrite(str(RESULTS_DIR / "analyze_eyes.png"), np.vstack(rows)[:, :, ::-1])
    _write({
        "faces": len(b),
        "as_is": {"both_open": float((b.min(1) >= 0.5).mean()), "eye_open_rate": float((b >= 0.5).mean())},
        "painted_shut": {"both_closed": float((a.max(1) < 0.5).mean()), "eye_closed_rate": float((a < 0.5).mean())},
        "note": "LFW eyes are mostly open but unlabelled; closed eyes are synthetic edits (analyze_eyes.png)",
    }, "analyze_eyes")


def cmd_expression_sheets(args: argparse.Namespace) -> None:
    """For each output class, the LFW faces scoring highest on it, on one contact sheet per class."""
    fa = _atlas(args)
    req = FaceRequest(faces="one", heads=("expression",))
    paths = _sample(args, args.expr_n)
    probs, boxes, kept = [], [], []
    for path, res in zip(paths, fa.iter_many(paths, req, chunk=16, errors="keep"), strict=True):
        if res.faces:
            e = res.faces[0].head("expression")
            probs.append([e.probabilities[k] for k in EXPRESSION_LABELS])
            boxes.append(res.faces[0].box.to_list())
            kept.append(path)
    p = np.array(probs)
    tops: dict[str, list[str]] = {}
    for c, label in enumerate(EXPRESSION_LABELS):
        order = np.argsort(-p[:, c])[:10]
        tops[label] = [kept[i].name for i in order]
        tiles = []
        for i in order:
            img = cv2.imread(str(kept[i]))
            x1, y1, x2, y2 = (int(v) for v in boxes[i])
            t = cv2.resize(img[max(y1 - 10, 0):y2 + 10, max(x1 - 10, 0):x2 + 10], (120, 120))
            cv2.putText(t, f"{p[i, c]:.2f}", (3, 14), 0, 0.45, (0, 255, 255), 1)
            tiles.append(t)
        cv2.imwrite(str(RESULTS_DIR / f"analyze_expression_{c}.png"), np.hstack(tiles))
    counts = Counter(EXPRESSION_LABELS[i] for i in p.argmax(1))
    _write({"faces": len(p), "argmax_counts": dict(counts), "top_faces": tops,
            "order": list(EXPRESSION_LABELS)}, "analyze_expression")


def _time(fn: Callable[[], Any], repeats: int) -> float:
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return float(np.min(best))  # the least disturbed run: the machine is shared


def cmd_speed(args: argparse.Namespace) -> None:
    """ms per face for each head and all heads together, next to the embedder (detection excluded)."""
    from faceatlas.analysis import ANALYSIS_HEADS

    fa = _atlas(args)
    items = []
    for path in _sample(args, args.speed_n):
        loaded = fa.load(path)
        res = fa.run(loaded, DETECT.but(faces="one"))
        if res.faces:
            items.append((loaded, res.faces[0].detection))
    heads = ["embedding", *ANALYSIS_HEADS]
    for h in heads:
        fa.run_heads(items[:2], [h])  # load models
    out: dict[str, float] = {}
    for h in heads:
        out[h] = 1000 * _time(lambda h=h: fa.run_heads(items, [h]), args.repeats) / len(items)
        progress(f"{h}: {out[h]:.2f} ms/face")
    analysis = [h for h in ANALYSIS_HEADS if h != "landmarks68"]
    out["all_analysis_heads"] = 1000 * _time(lambda: fa.run_heads(items, analysis), args.repeats) / len(items)
    out["embedding_plus_all"] = 1000 * _time(lambda: fa.run_heads(items, ["embedding", *analysis]),
                                             args.repeats) / len(items)
    _write({"faces": len(items), "threads": args.threads, "ms_per_face": out,
            "note": "detection excluded; best of --repeats runs; one thread; shared 2-core machine"}, "analyze_speed")


def cmd_overlay(args: argparse.Namespace) -> None:
    """Every head drawn on a few LFW photos (benchmarks/results/analyze_overlay.png) to check them by eye."""
    fa = _atlas(args)
    heads = ("age", "gender", "expression", "pose", "eyes", "liveness", "landmarks68")
    tiles = []
    for path in _sample(args, 8):
        res = fa.run(path, FaceRequest(faces="one", heads=heads))
        img = cv2.cvtColor(fa.load(path).rgb, cv2.COLOR_RGB2BGR)
        if res.faces:
            f = res.faces[0]
            for x, y in f.head("landmarks68").points:
                cv2.circle(img, (int(x), int(y)), 1, (0, 255, 255), -1)
            p, (x1, y1, x2, y2) = f.head("pose"), f.box.to_list()
            cx, cy, n = (x1 + x2) / 2, (y1 + y2) / 2, 0.4 * (x2 - x1)
            yaw, pitch = np.radians(p.yaw), np.radians(p.pitch)  # nose direction in the image plane
            cv2.arrowedLine(img, (int(cx), int(cy)), (int(cx - n * np.sin(yaw)), int(cy - n * np.sin(pitch))),
                            (0, 0, 255), 2)
            lines = [f"{f.head('gender').label} {f.head('age').years:.0f} {f.head('expression').label}",
                     f"y{p.yaw:+.0f} p{p.pitch:+.0f} r{p.roll:+.0f}",
                     f"eyes {f.head('eyes').left_open:.2f}/{f.head('eyes').right_open:.2f} "
                     f"live {f.head('liveness').score:.2f}"]
            for i, text in enumerate(lines):
                cv2.putText(img, text, (3, 14 + 14 * i), 0, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(cv2.resize(img, (250, 250)))
    cv2.imwrite(str(RESULTS_DIR / "analyze_overlay.png"), np.vstack([np.hstack(tiles[:4]), np.hstack(tiles[4:])]))
    progress(f"wrote {RESULTS_DIR / 'analyze_overlay.png'}")


def _add_options(ap: argparse.ArgumentParser) -> None:
    """Options only these commands use."""
    ap.add_argument("--pose-n", type=int, default=150)
    ap.add_argument("--eyes-n", type=int, default=200)
    ap.add_argument("--expr-n", type=int, default=3000)
    ap.add_argument("--speed-n", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "gender": cmd_gender,
    "pose": cmd_pose,
    "eyes": cmd_eyes,
    "expression-sheets": cmd_expression_sheets,
    "speed": cmd_speed,
    "overlay": cmd_overlay,
}
ADD_OPTIONS = _add_options
