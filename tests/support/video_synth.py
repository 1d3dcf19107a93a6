"""Synthetic moving-face videos built from still photos, with per-frame ground truth (for tests and benchmarks).

Test support, not part of the library: tests import it as ``support.video_synth`` (``tests/`` is on ``sys.path``
under pytest); benchmarks put ``tests/`` on ``sys.path`` first (see ``benchmarks/video_synth.py``).

A :class:`Scene` is a deterministic plan (from a seed): identities appear for a while, move along smooth paths while
their face size changes, go out of focus now and then, pass behind pillars and in front of each other, leave the
frame and come back later (with another photo of the same person). :func:`render_frame` draws frame ``i`` and
returns where every face is, how much of it is visible and who it is; :func:`write_video` writes the whole scene.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.types import Box, _r


@dataclass(frozen=True, eq=False)
class Sprite:
    """A face cut out of a photo: square RGB patch, feathered elliptical alpha, and the face box inside the patch."""

    rgb: npt.NDArray[np.uint8]
    alpha: npt.NDArray[np.float32]
    face: Box
    source: str = ""


def make_sprite(rgb: npt.NDArray[np.uint8], face: Box, source: str = "", context: float = 1.7) -> Sprite:
    """Cut a square of ``context`` × the face size around a detected face, with a soft elliptical edge."""
    import cv2

    side = int(round(max(face.width, face.height) * context))
    cx, cy = face.center
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    padded = cv2.copyMakeBorder(rgb, side, side, side, side, cv2.BORDER_REPLICATE)
    patch = np.ascontiguousarray(padded[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side], dtype=np.uint8)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r = ((xx - side / 2) / (side * 0.47)) ** 2 + ((yy - side / 2) / (side * 0.5)) ** 2
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0).astype(np.float32)
    inner = Box(face.x1 - x0, face.y1 - y0, face.x2 - x0, face.y2 - y0)
    return Sprite(patch, alpha, inner, source)


@dataclass(frozen=True)
class Appearance:
    """One stay of an identity in the frame: key points ``(t, cx, cy, face_px)`` and blur episodes ``(t0, t1, sigma)``."""

    identity: str
    sprite: int
    keys: tuple[tuple[float, float, float, float], ...]
    blur: tuple[tuple[float, float, float], ...] = ()
    phase: float = 0.0

    @property
    def t0(self) -> float:
        """Time the face starts entering."""
        return self.keys[0][0]

    @property
    def t1(self) -> float:
        """Time the face has left."""
        return self.keys[-1][0]

    def at(self, t: float) -> tuple[float, float, float] | None:
        """Face centre and size at time ``t`` (eased between key points), or None outside the stay."""
        if t < self.t0 or t > self.t1:
            return None
        for (ta, xa, ya, sa), (tb, xb, yb, sb) in zip(self.keys, self.keys[1:], strict=False):
            if ta <= t <= tb:
                u = 0.0 if tb == ta else (t - ta) / (tb - ta)
                e = 0.5 - 0.5 * math.cos(math.pi * u)
                return xa + (xb - xa) * e, ya + (yb - ya) * e, sa + (sb - sa) * e
        return None

    def sigma(self, t: float) -> float:
        """Gaussian blur (pixels at 100 px face size) at time ``t``."""
        for a, b, s in self.blur:
            if a <= t <= b:
                return s * math.sin(math.pi * (t - a) / max(b - a, 1e-6))
        return 0.0


@dataclass(frozen=True)
class Occluder:
    """A pillar (static) or a passer-by (moving rectangle) drawn in front of the faces."""

    x: float
    y: float
    width: float
    height: float
    color: tuple[int, int, int]
    t0: float = 0.0
    t1: float = math.inf
    dx: float = 0.0

    def rect(self, t: float) -> Box | None:
        """Where the occluder is at time ``t`` (None when absent)."""
        if t < self.t0 or t > self.t1:
            return None
        x = self.x + self.dx * (t - self.t0 if math.isfinite(self.t0) else 0.0)
        return Box(x, self.y, x + self.width, self.y + self.height)


@dataclass(frozen=True)
class SceneFace:
    """Ground truth for one face in one frame: identity, full face box, visible fraction, blur and photo used."""

    identity: str
    box: Box
    visible: float
    blur: float
    sprite: int

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {"identity": self.identity, "box": self.box.to_list(), "visible": _r(self.visible, 3),
                "blur": _r(self.blur, 2), "sprite": self.sprite}


@dataclass(frozen=True)
class Scene:
    """A deterministic plan of a synthetic video."""

    width: int
    height: int
    fps: float
    duration: float
    appearances: tuple[Appearance, ...]
    occluders: tuple[Occluder, ...]
    seed: int = 0
    noise: float = 0.0

    @property
    def frame_count(self) -> int:
        """Number of frames in the video."""
        return int(round(self.duration * self.fps))

    def identities(self) -> list[str]:
        """Every identity that appears, in first-appearance order."""
        return list(dict.fromkeys(a.identity for a in sorted(self.appearances, key=lambda a: a.t0)))

    def background(self) -> npt.NDArray[np.uint8]:
        """The static backdrop: a soft gradient, some furniture-like blocks and mild texture."""
        import cv2

        rng = np.random.default_rng(self.seed + 7919)
        h, w = self.height, self.width
        gy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        top = np.array(rng.uniform(90, 170, 3), np.float32)
        bottom = np.array(rng.uniform(40, 110, 3), np.float32)
        bg = np.broadcast_to(top * (1 - gy) + bottom * gy, (h, w, 3)).copy()
        for _ in range(14):
            x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
            bw, bh = int(rng.uniform(w * 0.05, w * 0.3)), int(rng.uniform(h * 0.05, h * 0.35))
            cv2.rectangle(bg, (x0, y0), (x0 + bw, y0 + bh), tuple(float(c) for c in rng.uniform(30, 220, 3)), -1)
        noise = rng.normal(0.0, 6.0, (h // 4, w // 4, 3)).astype(np.float32)
        bg += cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(bg, 0, 255).astype(np.uint8)


def plan_scene(
    photos: Mapping[str, int],
    *,
    duration: float = 150.0,
    fps: float = 12.0,
    width: int = 1280,
    height: int = 720,
    seed: int = 0,
    face_px: tuple[float, float] = (40.0, 140.0),
    stay: tuple[float, float] = (9.0, 24.0),
    away: tuple[float, float] = (2.0, 9.0),
    pillars: int = 2,
    passers: bool = True,
    blur: bool = True,
    noise: float = 4.0,
) -> Scene:
    """Plan a scene: each identity alternates stays (entering and leaving through frame edges) and absences.

    Faces are ``face_px`` pixels tall, each stay has one to three out-of-focus episodes (when ``blur``), and ``noise``
    is the standard deviation of grey sensor noise added to every frame. ``photos`` maps each identity to how many
    photos (sprites) it has; successive stays cycle through them.
    """
    if not photos or any(n < 1 for n in photos.values()):
        raise InvalidInputError("invalid_input", "every identity needs at least one photo")
    if duration <= 0 or fps <= 0:
        raise InvalidInputError("invalid_input", "duration and fps must be positive")
    rng = np.random.default_rng(seed)
    apps: list[Appearance] = []
    for k, (ident, n_photos) in enumerate(photos.items()):
        t = float(rng.uniform(0.0, min(4.0, duration * 0.1))) if k else 0.0
        stay_no = 0
        while t < duration - 2.0:
            length = min(float(rng.uniform(*stay)), duration - t)
            apps.append(_stay(rng, ident, stay_no % n_photos, t, length, width, height, face_px, blur))
            stay_no += 1
            t += length + float(rng.uniform(*away))
    occ: list[Occluder] = []
    for p in range(pillars):
        x = width * (p + 1) / (pillars + 1) + float(rng.uniform(-0.05, 0.05)) * width
        occ.append(Occluder(x, 0.0, width * 0.045, float(height), (70, 60, 55)))
    if passers:
        t = float(rng.uniform(3.0, 10.0))
        while t < duration:
            w_p, h_p = width * float(rng.uniform(0.08, 0.14)), height * float(rng.uniform(0.55, 0.9))
            speed = width * float(rng.uniform(0.25, 0.45)) * (1 if rng.uniform() < 0.5 else -1)
            cross = (width + w_p) / abs(speed)
            x0 = -w_p if speed > 0 else float(width)
            color = tuple(int(c) for c in rng.uniform(20, 120, 3))
            occ.append(Occluder(x0, height - h_p, w_p, h_p, (color[0], color[1], color[2]), t, t + cross, speed))
            t += cross + float(rng.uniform(6.0, 16.0))
    return Scene(width, height, fps, duration, tuple(apps), tuple(occ), seed, noise)


def _stay(
    rng: np.random.Generator, ident: str, sprite: int, t0: float, length: float, width: int, height: int,
    face_px: tuple[float, float], blur: bool,
) -> Appearance:
    """Key points of one stay: enter from an edge, wander through a few points (with pauses), leave by an edge."""
    def edge_point(size: float) -> tuple[float, float]:
        side = int(rng.integers(0, 3))
        if side == 0:
            return -0.8 * size, float(rng.uniform(0.25, 0.7)) * height
        if side == 1:
            return width + 0.8 * size, float(rng.uniform(0.25, 0.7)) * height
        return float(rng.uniform(0.15, 0.85)) * width, height + 0.9 * size

    n_inner = int(rng.integers(2, 5))
    times = np.sort(rng.uniform(0.0, 1.0, n_inner)) * 0.8 + 0.1
    sizes = rng.uniform(*face_px, n_inner + 2)
    keys: list[tuple[float, float, float, float]] = []
    x, y = edge_point(float(sizes[0]))
    keys.append((t0, x, y, float(sizes[0])))
    for i, u in enumerate(times):
        px, py = float(rng.uniform(0.1, 0.9)) * width, float(rng.uniform(0.2, 0.75)) * height
        tk = t0 + float(u) * length
        if tk <= keys[-1][0] + 0.5:
            continue
        keys.append((tk, px, py, float(sizes[i + 1])))
        if rng.uniform() < 0.35:  # pause there a little
            pause = min(float(rng.uniform(0.5, 2.5)), 0.3 * length)
            keys.append((tk + pause, px, py, float(sizes[i + 1])))
    x, y = edge_point(float(sizes[-1]))
    keys.append((max(t0 + length, keys[-1][0] + 1.0), x, y, float(sizes[-1])))
    episodes: list[tuple[float, float, float]] = []
    if blur:
        for _ in range(int(rng.integers(1, 4))):
            a = t0 + float(rng.uniform(0.0, max(0.1, length - 1.5)))
            episodes.append((a, a + float(rng.uniform(0.8, 2.5)), float(rng.uniform(2.0, 5.0))))
    return Appearance(ident, sprite, tuple(keys), tuple(episodes), float(rng.uniform(0, 2 * math.pi)))


def render_frame(
    scene: Scene,
    sprites: Mapping[str, Sequence[Sprite]],
    index: int,
    background: npt.NDArray[np.uint8] | None = None,
) -> tuple[npt.NDArray[np.uint8], list[SceneFace]]:
    """Draw frame ``index`` (RGB) and return it with the ground truth of every face at least partly in frame."""
    import cv2

    t = index / scene.fps
    h, w = scene.height, scene.width
    frame = (background if background is not None else scene.background()).astype(np.float32)
    owner = np.full((h, w), -1, np.int16)
    placed: list[tuple[Appearance, Box, float]] = []
    live = [(a, a.at(t)) for a in scene.appearances]
    order = sorted(((a, p) for a, p in live if p is not None), key=lambda ap: ap[1][2])  # small (far) first
    for k, (app, (cx, cy, size)) in enumerate(order):
        sp = sprites[app.identity][app.sprite % len(sprites[app.identity])]
        scale = size / max(sp.face.height, 1.0)
        side = max(4, int(round(sp.rgb.shape[0] * scale)))
        patch = cv2.resize(sp.rgb, (side, side), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        alpha = cv2.resize(sp.alpha, (side, side), interpolation=cv2.INTER_LINEAR)
        sigma = app.sigma(t) * size / 100.0
        if sigma > 0.3:
            patch = cv2.GaussianBlur(patch, (0, 0), sigma)
        gain = 1.0 + 0.18 * math.sin(2 * math.pi * t / 9.0 + app.phase)
        fx, fy = sp.face.center
        x0, y0 = int(round(cx - fx * scale)), int(round(cy - fy * scale))
        ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
        if ax1 > ax0 and ay1 > ay0:
            sub = patch[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0].astype(np.float32) * gain
            a = alpha[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0, None]
            frame[ay0:ay1, ax0:ax1] = frame[ay0:ay1, ax0:ax1] * (1 - a) + sub * a
            owner[ay0:ay1, ax0:ax1][a[:, :, 0] > 0.5] = k
        box = Box(cx - (fx - sp.face.x1) * scale, cy - (fy - sp.face.y1) * scale,
                  cx + (sp.face.x2 - fx) * scale, cy + (sp.face.y2 - fy) * scale)
        placed.append((app, box, sigma))
    for occ in scene.occluders:
        r = occ.rect(t)
        if r is None:
            continue
        x1, y1, x2, y2 = int(max(0, r.x1)), int(max(0, r.y1)), int(min(w, r.x2)), int(min(h, r.y2))
        if x2 > x1 and y2 > y1:
            frame[y1:y2, x1:x2] = occ.color
            owner[y1:y2, x1:x2] = -1
    if scene.noise > 0:
        rng = np.random.default_rng(scene.seed * 100_003 + index)
        frame += rng.normal(0.0, scene.noise, (h // 2, w // 2, 1)).astype(np.float32).repeat(2, 0).repeat(2, 1)[:h, :w]
    out = np.clip(frame, 0, 255).astype(np.uint8)
    faces = []
    for k, (app, box, sigma) in enumerate(placed):
        area = max(box.area, 1.0)
        x1, y1, x2, y2 = int(max(0, box.x1)), int(max(0, box.y1)), int(min(w, box.x2)), int(min(h, box.y2))
        vis = float((owner[y1:y2, x1:x2] == k).sum()) / area if x2 > x1 and y2 > y1 else 0.0
        if x2 > x1 and y2 > y1:
            faces.append(SceneFace(app.identity, box, min(1.0, vis), sigma, app.sprite))
    return out, faces


def write_video(
    scene: Scene,
    sprites: Mapping[str, Sequence[Sprite]],
    path: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
) -> list[list[SceneFace]]:
    """Render every frame into a video file (codec from the extension) and return the per-frame ground truth."""
    from faceatlas.video.render import VideoWriter

    missing = [i for i in scene.identities() if not sprites.get(i)]
    if missing:
        raise InvalidInputError("invalid_input", f"no sprites for {', '.join(missing)}")
    bg = scene.background()
    truth: list[list[SceneFace]] = []
    with VideoWriter(path, scene.fps, scene.width, scene.height) as writer:
        for i in range(scene.frame_count):
            rgb, faces = render_frame(scene, sprites, i, bg)
            writer.write(rgb)
            truth.append(faces)
            if progress is not None:
                progress(i + 1, scene.frame_count)
    if not os.path.getsize(path):
        raise FaceAtlasError("video_write_failed", f"{path}: nothing was written")
    return truth
