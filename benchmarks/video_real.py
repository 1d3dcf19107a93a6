"""Video on realistic generated footage: wrong names, MOTA/IDF1, fragmentation, identity accuracy, speed (issue #16).

The footage (``tests/support/footage.py``) is built from LFW stills: five shots separated by hard cuts (stage,
audience of unenrolled people, stage, audience, stage), camera pans and zooms, people entering and leaving, crossing
in front of each other, head turns, motion blur, lighting changes, JPEG artefacts, a long absence then a return.
Three people are enrolled from OTHER LFW photos of them; four strangers are not enrolled. The clip is written as MP4
and analysed through the public API (``faceatlas.video.analyze_frames``), for each embedder and each tracker
(``legacy`` = the tracker and identity rules before issue #16; ``bytetrack`` = the default now).

Per run (ground truth faces at least 50 % visible, at least 20 px tall; detections matched to them by IoU ≥ 0.3):

- **wrong-name frames**: faces shown with an enrolled person's name that belongs to someone else (target 0); also
  named detections matching no true face at all (unless they lie on that person's own, partly off-screen face);
- **MOTA / IDF1 / ID switches / fragmentations** from ``motmetrics`` (ground-truth id = the person), and IDF1 / ID
  switches again with ground-truth id = the appearance (scene cuts and re-entries start new ids: one track per
  person per appearance is then the perfect answer);
- **tracks per appearance**: distinct track ids covering each true appearance (a continuous stay in one shot), mean;
- **identity accuracy per frame** (shown label right: the enrolled person, or unknown for strangers; undecided faces
  count as wrong) and **per track** (its final identity equals the person it mostly followed);
- **label changes**: how often a track's shown label changes once it has one (``unknown-3`` → a name included), and
  **name changes**: how often a shown person's name changes to anything else (flicker; 0 is best);
- frames/s of the whole analysis and the share of faces embedded (the saving of ``embed_every``).

Also: one-person photo-sequence clips (several LFW photos of one person, cross-faded) → tracks and identity.

    python benchmarks/video_real.py                   # 60 s, sface + fusion, legacy vs bytetrack (+ no-skip run)
    python benchmarks/video_real.py --quick           # 30 s, sface only
    python benchmarks/video_real.py --frames /tmp/v16 # also save a few annotated frames as PNG
    python benchmarks/video_real.py --speed           # only frames/s: 20 s of 720p, 4 faces in every frame
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, default_data_dir, default_out, environment, progress, write_json

from faceatlas.facade import FaceAtlas
from faceatlas.gallery import Gallery
from faceatlas.video import TrackerConfig, analyze_frames
from faceatlas.video.tracker import assign

sys.path.insert(0, str(REPO / "tests"))  # the footage generators live in tests/support
from support.footage import Footage, TruthFace, crowd, photo_clip, pick_photos, storyboard, write  # noqa: E402

ENROLLED = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld"]
STRANGERS = ["Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez", "Jean_Chretien"]
MIN_VISIBLE = 0.5
MIN_HEIGHT = 20.0


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="clip length in seconds (default 60)")
    ap.add_argument("--fps", type=float, default=10.0, help="clip frame rate (default 10)")
    ap.add_argument("--models", default="sface,fusion", help="embedders to compare (default sface,fusion)")
    ap.add_argument("--runs", default="legacy,bytetrack,noskip",
                    help="analyses per model: legacy, bytetrack, noskip (bytetrack embedding every face)")
    ap.add_argument("--no-photos", action="store_true", help="skip the one-person photo-sequence clips")
    ap.add_argument("--speed", action="store_true",
                    help="only the speed test: 20 s of 720p with four people on screen throughout, skip vs no skip")
    ap.add_argument("--quick", action="store_true", help="30 s, sface only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=Path, default=None, help="save annotated PNG frames of the sface bytetrack run here")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default: benchmarks/results/video_real.json)")
    return ap.parse_args()


def match(det_boxes: list[Any], truth_boxes: list[Any], min_iou: float = 0.3) -> list[tuple[int, int]]:
    """Detections matched one-to-one to ground-truth faces by IoU."""
    if not det_boxes or not truth_boxes:
        return []
    cost = np.full((len(det_boxes), len(truth_boxes)), 1e6)
    for i, d in enumerate(det_boxes):
        for j, g in enumerate(truth_boxes):
            iou = d.iou(g)
            if iou >= min_iou:
                cost[i, j] = 1.0 - iou
    return assign(cost)


def _inside(a: Any, b: Any) -> float:
    """Share of box ``a`` inside box ``b``."""
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    return w * h / max(a.area, 1e-6)


def cared(g: TruthFace, width: int, height: int) -> bool:
    """Whether a ground-truth face must be found: visible enough, tall enough, mostly inside the frame."""
    inside = max(0.0, min(g.box.x2, width) - max(g.box.x1, 0.0)) * max(0.0, min(g.box.y2, height) - max(g.box.y1, 0.0))
    return g.visible >= MIN_VISIBLE and g.box.height >= MIN_HEIGHT and inside >= 0.7 * g.box.area


def score(results: list[Any], truth: list[list[TruthFace]], footage: Footage) -> dict[str, Any]:
    """Every metric of one analysis run against the ground truth."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=False)
    acc_app = mm.MOTAccumulator(auto_id=False)  # ground-truth id = the appearance (a new shot or re-entry is new)
    person_id = {p: k for k, p in enumerate(footage.identities())}
    wrong_frames = wrong_unmatched = 0
    per_frame = Counter[str]()
    covering: dict[int, set[int]] = defaultdict(set)
    care_frames: Counter[int] = Counter()
    followed: dict[int, Counter[str]] = defaultdict(Counter)
    shown: dict[int, list[tuple[str, bool]]] = defaultdict(list)
    for r in results:
        if r.final:
            continue
        gt = truth[r.frame]
        care = [g for g in gt if cared(g, footage.width, footage.height)]
        faces = [f for f in r.faces if f.track is not None]
        pairs = match([f.box for f in faces], [g.box for g in gt])
        matched_to = {i: gt[j] for i, j in pairs}
        hyp = [i for i, f in enumerate(faces) if i not in matched_to or matched_to[i] in care]
        for i, f in enumerate(faces):
            g = matched_to.get(i)
            person = f.identity.person if f.identity is not None else None
            assert f.track is not None
            label = f.identity.label if f.identity is not None else None
            if label is not None and (not shown[f.track] or shown[f.track][-1][0] != label):
                shown[f.track].append((label, person is not None))
            if person is not None and (g is None or g.identity != person):
                if g is not None:
                    wrong_frames += 1
                elif not any(o.identity == person and _inside(f.box, o.box) >= 0.5 for o in gt):
                    wrong_unmatched += 1  # (a named face at the frame edge, cut off, still belongs to its person)
            if g is not None and g in care:
                assert f.track is not None
                covering[g.appearance].add(f.track)
                followed[f.track][g.identity] += 1
                want = g.identity if g.identity in ENROLLED else None
                per_frame["faces"] += 1
                per_frame["decided"] += f.identity is not None
                per_frame["correct"] += f.identity is not None and person == want
        for g in care:
            care_frames[g.appearance] += 1
        dist = np.full((len(care), len(hyp)), np.nan)
        for a, g in enumerate(care):
            for b, i in enumerate(hyp):
                iou = faces[i].box.iou(g.box)
                if iou >= 0.3:
                    dist[a, b] = 1.0 - iou
        acc.update([person_id[g.identity] for g in care], [faces[i].track for i in hyp], dist, frameid=r.frame)
        acc_app.update([g.appearance for g in care], [faces[i].track for i in hyp], dist, frameid=r.frame)
    mh = mm.metrics.create()
    summary = mh.compute(acc, metrics=["mota", "idf1", "num_switches", "num_fragmentations", "recall", "precision",
                                       "mostly_tracked", "num_unique_objects"], name="run")
    mot = {k: float(summary[k].iloc[0]) for k in summary.columns}
    per_app = mh.compute(acc_app, metrics=["idf1", "num_switches"], name="run")
    appearances = [a for a, n in care_frames.items() if n >= 5]
    frag = [len(covering[a]) for a in appearances if covering[a]]
    ends = {e.track: e for r in results for e in r.events if e.kind == "track_end"}
    track_ok = track_wrong_name = 0
    for tid, counts in followed.items():
        truth_id = counts.most_common(1)[0][0]
        want = truth_id if truth_id in ENROLLED else None
        got = ends[tid].person if tid in ends else None
        track_ok += got == want
        track_wrong_name += got is not None and got != truth_id
    return {
        "wrong_name_frames": wrong_frames,
        "wrong_name_unmatched_detections": wrong_unmatched,
        "mota": round(mot["mota"], 4), "idf1": round(mot["idf1"], 4), "id_switches": int(mot["num_switches"]),
        "idf1_appearance": round(float(per_app["idf1"].iloc[0]), 4),
        "id_switches_appearance": int(per_app["num_switches"].iloc[0]),
        "fragmentations": int(mot["num_fragmentations"]), "recall": round(mot["recall"], 4),
        "precision": round(mot["precision"], 4),
        "tracks": len(ends), "appearances": len(appearances),
        "tracks_per_appearance": round(float(np.mean(frag)) if frag else 0.0, 3),
        "appearances_found": len(frag),
        "identity_accuracy_frame": round(per_frame["correct"] / max(per_frame["faces"], 1), 4),
        "identity_decided_frame": round(per_frame["decided"] / max(per_frame["faces"], 1), 4),
        "identity_accuracy_track": round(track_ok / max(len(followed), 1), 4),
        "tracks_scored": len(followed), "tracks_named_wrong": track_wrong_name,
        "label_changes": sum(max(0, len(v) - 1) for v in shown.values()),
        "name_changes": sum(1 for v in shown.values() for (_, named), _ in zip(v, v[1:], strict=False) if named),
    }


def run(video: Path, atlas: FaceAtlas, gallery: Gallery, tracker: TrackerConfig, annotate: Path | None = None
        ) -> tuple[list[Any], dict[str, Any]]:
    """Analyse the clip once; the results and the speed figures."""
    from faceatlas.video import VideoAnalyzer

    made: list[VideoAnalyzer] = []
    original = VideoAnalyzer.__init__

    def spy(self: VideoAnalyzer, *a: Any, **k: Any) -> None:
        original(self, *a, **k)
        made.append(self)

    VideoAnalyzer.__init__ = spy  # type: ignore[method-assign]  # to read the embedding counters afterwards
    try:
        t0 = time.perf_counter()
        results = list(analyze_frames(video, atlas, gallery, "bench", fps=None, tracker=tracker, annotate_to=annotate))
        seconds = time.perf_counter() - t0
    finally:
        VideoAnalyzer.__init__ = original  # type: ignore[method-assign]
    an = made[0]
    frames = sum(1 for r in results if not r.final)
    return results, {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 2),
                     "faces_detected": an.detections, "faces_embedded": an.embedded,
                     "embedded_share": round(an.embedded / max(an.detections, 1), 4),
                     "cuts_detected": [r.frame for r in results if r.cut],
                     "gates": an.gates.to_dict() if an.gates else None, "track_threshold": an.track_threshold}


def save_frames(annotated: Path, frames: list[int], folder: Path) -> list[str]:
    """Extract some frames of the annotated video as PNG files."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(annotated))
    out = []
    index = 0
    wanted = set(frames)
    while wanted:
        ok, bgr = cap.read()
        if not ok:
            break
        if index in wanted:
            path = folder / f"frame_{index:04d}.png"
            cv2.imwrite(str(path), bgr)
            out.append(str(path))
            wanted.discard(index)
        index += 1
    cap.release()
    return out


def photo_clips(atlas: FaceAtlas, gallery: Gallery, sprites: dict[str, list[Any]], work: Path) -> dict[str, Any]:
    """One-person photo sequences: how many tracks and which identity."""
    from support.footage import write as write_clip

    out = {}
    for name in ENROLLED:
        clip = photo_clip(name, len(sprites[name]), seconds_per_photo=1.0)
        path = work / f"photos_{name}.mp4"
        write_clip(clip, {name: sprites[name]}, path)
        events = [e for r in analyze_frames(path, atlas, gallery, "bench", fps=None) for e in r.events]
        ends = [e for e in events if e.kind == "track_end"]
        mine = [e for e in ends if e.person == name]
        out[name] = {"photos": len(sprites[name]), "tracks_named_person": len(mine),
                     "person_seconds": [round(e.summary.duration, 2) for e in mine if e.summary is not None],
                     "other_tracks": len(ends) - len(mine),  # bystanders inside the LFW photos
                     "other_identities": sorted({str(e.person) for e in ends if e.person != name})}
    return out


def speed_test(args: argparse.Namespace, models: list[str], root: Path, work: Path) -> None:
    """Frames/s on a 720p clip with four faces in every frame, with and without skipping embeddings."""
    base = FaceAtlas(threads=args.threads)
    people = ENROLLED + STRANGERS[:1]
    sprites = {n: pick_photos(base, root / n, 1, 0, args.seed + k)[0] for k, n in enumerate(people)}
    clip = crowd(people, fps=args.fps, seed=args.seed)
    video = work / "crowd.mp4"
    truth = write(clip, sprites, video)
    report: dict[str, Any] = {"clip": {"seconds": clip.duration, "size": [clip.width, clip.height],
                                       "faces_per_frame": [min(len(t) for t in truth), max(len(t) for t in truth)]},
                              "runs": {}, "environment": environment()}
    for model in models:
        atlas = base if model == "sface" else FaceAtlas(embedder=model, threads=args.threads)
        gallery = Gallery.open(work / f"speed_{model}.db")
        gallery.create_collection("bench", atlas.model_id, atlas.embedder.model_sha256, atlas.embedder.dim)
        for k, name in enumerate(ENROLLED):
            gallery.add_person("bench", name, name)
            gallery.add_samples("bench", name, pick_photos(atlas, root / name, 1, 6, args.seed + k)[1])
        for label, cfg in (("skip", TrackerConfig()), ("no skip", TrackerConfig(embed_every=1, embed_gain=1.0))):
            results, row = run(video, atlas, gallery, cfg)
            row["wrong_name_frames"] = score(results, truth, clip)["wrong_name_frames"]
            report["runs"][f"{model} / {label}"] = row
            progress(f"{model} / {label}: {row['fps']} frames/s, {row['embedded_share']:.0%} of faces embedded")
        gallery.close()
    write_json(args.out or default_out("video_real_speed"), report)


def main() -> None:
    """Build the footage, enrol, analyse with each embedder and tracker, score, print and save."""
    args = parse_args()
    if args.speed:
        speed_test(args, [m.strip() for m in args.models.split(",") if m.strip()], default_data_dir() / "lfw" / "images",
                   Path(tempfile.mkdtemp(prefix="faceatlas-video-speed-")))
        return
    duration = 30.0 if args.quick else args.duration
    models = ["sface"] if args.quick else [m.strip() for m in args.models.split(",") if m.strip()]
    root = default_data_dir() / "lfw" / "images"
    work = Path(tempfile.mkdtemp(prefix="faceatlas-video-real-"))
    base = FaceAtlas(threads=args.threads)
    progress("choosing photos")
    sprites: dict[str, list[Any]] = {}
    enrol_files: dict[str, list[Any]] = {}
    for k, name in enumerate(ENROLLED + STRANGERS):
        sprites[name], enrol_files[name] = pick_photos(base, root / name, 4, 6 if name in ENROLLED else 0, args.seed + k)
    footage = storyboard(ENROLLED, STRANGERS, duration=duration, fps=args.fps, seed=args.seed)
    video = work / "footage.mp4"
    progress(f"rendering {footage.frame_count} frames → {video}")
    truth = write(footage, sprites, video)
    report: dict[str, Any] = {"footage": {"seconds": duration, "fps": args.fps, "size": [footage.width, footage.height],
                                          "frames": footage.frame_count, "shots": len(footage.shots),
                                          "cut_frames": footage.cut_frames(), "enrolled": ENROLLED,
                                          "strangers": STRANGERS,
                                          "faces_per_frame": [min(len(t) for t in truth), max(len(t) for t in truth)]},
                              "runs": {}, "environment": environment()}
    for model in models:
        atlas = base if model == "sface" else FaceAtlas(embedder=model, threads=args.threads)
        gallery = Gallery.open(work / f"gallery_{model}.db")
        gallery.create_collection("bench", atlas.model_id, atlas.embedder.model_sha256, atlas.embedder.dim)
        for name in ENROLLED:
            _, templates = pick_photos(atlas, root / name, 4, 6, args.seed + ENROLLED.index(name))
            gallery.add_person("bench", name, name.replace("_", " "))
            gallery.add_samples("bench", name, templates)
        wanted = {r.strip() for r in args.runs.split(",")}
        variants = [(label, cfg) for key, label, cfg in (
            ("legacy", "legacy", TrackerConfig(kind="legacy")), ("bytetrack", "bytetrack", TrackerConfig()),
            ("noskip", "bytetrack, embed every face", TrackerConfig(embed_every=1, embed_gain=1.0))) if key in wanted]
        for label, cfg in variants:
            progress(f"{model}: {label}")
            keep = work / "annotated.mp4" if (model == "sface" and label == "bytetrack") else None
            results, speed = run(video, atlas, gallery, cfg, keep)
            row = {**score(results, truth, footage), **speed}
            report["runs"][f"{model} / {label}"] = row
            progress(json.dumps(row))
            if keep is not None and args.frames is not None:
                picks = [int(footage.fps * s) for s in (0.12 * duration, 0.17 * duration, 0.3 * duration,
                                                       0.5 * duration, 0.8 * duration, 0.95 * duration)]
                report["annotated_frames"] = save_frames(keep, picks, args.frames)
        if model == "sface" and not args.no_photos:
            report["photo_clips"] = photo_clips(atlas, gallery, sprites, work)
        gallery.close()
    keys = ["wrong_name_frames", "mota", "idf1", "idf1_appearance", "id_switches", "tracks_per_appearance",
            "identity_accuracy_frame", "identity_accuracy_track", "name_changes", "label_changes", "tracks", "fps",
            "embedded_share"]
    print("| run | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in report["runs"].items():
        print(f"| {name} | " + " | ".join(str(row[k]) for k in keys) + " |")
    if "photo_clips" in report:
        print("photo clips:", json.dumps(report["photo_clips"]))
    write_json(args.out or default_out("video_real"), report)


if __name__ == "__main__":
    main()
