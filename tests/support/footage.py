"""Realistic-looking footage from LFW stills, with per-frame ground truth (test and benchmark support, not the library).

Compared with :mod:`support.video_synth` this adds what real footage does to a tracker: shots separated by hard
cuts (to audience shots full of unenrolled people), a camera that pans and zooms (its motion blurs the frame), faces
that turn (horizontal flips and perspective warps of the face photo) and cross in front of each other, motion blur,
lighting changes (dimming, tint), JPEG compression on every frame, people leaving and coming back after a long
absence. :func:`storyboard` plans such a clip; :func:`photo_clip` renders one person's several LFW photos as a short
clip (real pose and lighting change between "frames"); :func:`render` draws frame ``i`` with its ground truth.

Ground truth per face: identity, *appearance* (one continuous stay on screen inside one shot; a new shot or a
re-entry is a new appearance), full face box in the frame and the visible fraction.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.types import Box, _r
from support.video_synth import Sprite

Key = tuple[float, float, float, float]  # (t, x, y, face height) in shot coordinates (frame pixels at zoom 1)


def _f32(x: Any) -> npt.NDArray[np.float32]:
    """A float32 array of anything array-like."""
    return np.asarray(x, np.float32)


def _ease(keys: Sequence[tuple[float, ...]], t: float) -> tuple[float, ...] | None:
    """Eased interpolation of key points ``(t, v1, v2, ...)``; None outside their time span."""
    if not keys or t < keys[0][0] or t > keys[-1][0]:
        return None
    if len(keys) == 1:
        return tuple(keys[0][1:])
    for a, b in zip(keys, keys[1:], strict=False):
        if a[0] <= t <= b[0]:
            u = 0.0 if b[0] == a[0] else (t - a[0]) / (b[0] - a[0])
            e = 0.5 - 0.5 * math.cos(math.pi * u)
            return tuple(x + (y - x) * e for x, y in zip(a[1:], b[1:], strict=True))
    return None


@dataclass(frozen=True)
class Walk:
    """One continuous appearance of a person in a shot: path, photos used, head turns, mirrored or not."""

    identity: str
    appearance: int
    keys: tuple[Key, ...]
    sprites: tuple[int, ...] = (0,)
    turns: tuple[tuple[float, float, float], ...] = ()
    flip: bool = False
    switch: float = 0.0

    def at(self, t: float) -> tuple[float, float, float] | None:
        """Face centre and height at ``t`` (shot coordinates), None outside the stay."""
        v = _ease(self.keys, t)
        return None if v is None else (v[0], v[1], v[2])

    def yaw(self, t: float) -> float:
        """Head turn in [-1, 1] at ``t`` (0 = as photographed)."""
        for a, b, peak in self.turns:
            if a <= t <= b:
                return peak * math.sin(math.pi * (t - a) / max(b - a, 1e-6))
        return 0.0

    def photo(self, t: float) -> tuple[int, int, float]:
        """The photo shown at ``t``, the next one and the cross-fade weight of the next (photo sequences)."""
        if self.switch <= 0 or len(self.sprites) == 1:
            return self.sprites[0], self.sprites[0], 0.0
        u = (t - self.keys[0][0]) / self.switch
        k = int(u)
        fade = min(1.0, max(0.0, (u - k - 0.8) / 0.2))
        return self.sprites[k % len(self.sprites)], self.sprites[(k + 1) % len(self.sprites)], fade


@dataclass(frozen=True)
class Shot:
    """A continuous camera take: its people, camera path ``(t, pan_x, pan_y, zoom)``, backdrop and lighting."""

    t0: float
    t1: float
    walks: tuple[Walk, ...]
    camera: tuple[tuple[float, float, float, float], ...]
    backdrop: int
    light: tuple[tuple[float, float], ...] = ()
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def view(self, t: float) -> tuple[float, float, float]:
        """Camera pan (x, y) and zoom at ``t``."""
        v = _ease(self.camera, min(max(t, self.camera[0][0]), self.camera[-1][0]))
        assert v is not None
        return v[0], v[1], v[2]

    def gain(self, t: float) -> float:
        """Overall brightness factor at ``t``."""
        if not self.light:
            return 1.0
        v = _ease(self.light, min(max(t, self.light[0][0]), self.light[-1][0]))
        return 1.0 if v is None else v[0]


@dataclass(frozen=True)
class Footage:
    """A planned clip: frame size and rate, shots in time order, compression quality and sensor noise."""

    width: int
    height: int
    fps: float
    shots: tuple[Shot, ...]
    jpeg_quality: int = 40
    noise: float = 3.0
    seed: int = 0

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.shots[-1].t1

    @property
    def frame_count(self) -> int:
        """Number of frames."""
        return int(round(self.duration * self.fps))

    def shot_at(self, t: float) -> Shot:
        """The shot on screen at ``t``."""
        return next((s for s in self.shots if s.t0 <= t < s.t1), self.shots[-1])

    def cut_frames(self) -> list[int]:
        """Frames that start a new shot."""
        return [int(round(s.t0 * self.fps)) for s in self.shots[1:]]

    def identities(self) -> list[str]:
        """Every identity shown, in order of first appearance."""
        return list(dict.fromkeys(w.identity for s in self.shots for w in s.walks))


@dataclass(frozen=True)
class TruthFace:
    """Ground truth of one face in one frame."""

    identity: str
    appearance: int
    box: Box
    visible: float

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {"identity": self.identity, "appearance": self.appearance, "box": self.box.to_list(),
                "visible": _r(self.visible, 3)}


def backdrop(seed: int, width: int, height: int) -> npt.NDArray[np.uint8]:
    """A textured room-like backdrop 1.6 times the frame size (room for pans and zooms)."""
    import cv2

    rng = np.random.default_rng(seed * 7919 + 11)
    h, w = int(height * 1.6), int(width * 1.6)
    gy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    top, bottom = np.array(rng.uniform(60, 200, 3), np.float32), np.array(rng.uniform(20, 120, 3), np.float32)
    bg = np.broadcast_to(top * (1 - gy) + bottom * gy, (h, w, 3)).copy()
    for _ in range(24):
        x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        bw, bh = int(rng.uniform(w * 0.03, w * 0.25)), int(rng.uniform(h * 0.03, h * 0.3))
        cv2.rectangle(bg, (x0, y0), (x0 + bw, y0 + bh), tuple(float(c) for c in rng.uniform(20, 230, 3)), -1)
    noise = rng.normal(0.0, 8.0, (h // 6, w // 6, 3)).astype(np.float32)
    bg += cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _line_kernel(dx: float, dy: float) -> npt.NDArray[np.float32] | None:
    """A normalised motion-blur kernel along (dx, dy) pixels (None when shorter than 2 px)."""
    n = int(round(math.hypot(dx, dy)))
    if n < 2:
        return None
    size = (n + 2) | 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    for s in np.linspace(-0.5, 0.5, 2 * n):
        k[min(size - 1, max(0, int(round(c + s * dy)))), min(size - 1, max(0, int(round(c + s * dx))))] = 1.0
    return k / k.sum()


def _turned(sp: Sprite, yaw: float, flip: bool) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], Box]:
    """The sprite (RGB float, alpha) turned by ``yaw`` (perspective squeeze) and mirrored, with its face box."""
    import cv2

    rgb, alpha, face = sp.rgb.astype(np.float32), sp.alpha, sp.face
    side = rgb.shape[0]
    if flip:
        rgb, alpha = rgb[:, ::-1].copy(), alpha[:, ::-1].copy()
        face = Box(side - face.x2, face.y1, side - face.x1, face.y2)
    if abs(yaw) < 0.02:
        return rgb, alpha, face
    cw, ch = 1.0 - 0.35 * abs(yaw), 1.0 - 0.22 * abs(yaw)
    x0, x1, dy = side * (1 - cw) / 2, side * (1 + cw) / 2, side * (1 - ch) / 2
    src = _f32([[0, 0], [side, 0], [side, side], [0, side]])
    if yaw > 0:  # the right side turns away
        dst = _f32([[x0, 0], [x1, dy], [x1, side - dy], [x0, side]])
    else:
        dst = _f32([[x0, dy], [x1, 0], [x1, side], [x0, side - dy]])
    m = cv2.getPerspectiveTransform(src, dst)
    rgb = _f32(cv2.warpPerspective(rgb, m, (side, side), borderMode=cv2.BORDER_REPLICATE))
    alpha = _f32(cv2.warpPerspective(alpha, m, (side, side)))
    pts = cv2.perspectiveTransform(_f32([[[face.x1, face.y1], [face.x2, face.y1], [face.x2, face.y2],
                                                [face.x1, face.y2]]]), m)[0]
    return rgb, alpha, Box(float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def render(
    footage: Footage,
    sprites: Mapping[str, Sequence[Sprite]],
    index: int,
    backdrops: dict[int, npt.NDArray[np.uint8]] | None = None,
) -> tuple[npt.NDArray[np.uint8], list[TruthFace]]:
    """Draw frame ``index`` (RGB) and return it with the ground truth of every face at least partly in frame."""
    import cv2

    w, h = footage.width, footage.height
    t = index / footage.fps
    shot = footage.shot_at(t)
    cache = backdrops if backdrops is not None else {}
    if shot.backdrop not in cache:
        cache[shot.backdrop] = backdrop(shot.backdrop, w, h)
    px, py, zoom = shot.view(t)
    nx, ny, _ = shot.view(t + 1.0 / footage.fps)
    m = _f32([[zoom, 0, w / 2 - (0.3 * w + px) * zoom], [0, zoom, h / 2 - (0.3 * h + py) * zoom]])
    frame = cv2.warpAffine(cache[shot.backdrop], m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT).astype(np.float32)

    def to_frame(x: float, y: float, cx: float, cy: float) -> tuple[float, float]:
        return (x - cx) * zoom + w / 2, (y - cy) * zoom + h / 2

    owner = np.full((h, w), -1, np.int16)
    placed: list[tuple[Walk, Box]] = []
    live = [(wk, wk.at(t)) for wk in shot.walks]
    order = sorted(((wk, p) for wk, p in live if p is not None), key=lambda wp: wp[1][2])  # far (small) first
    for k, (wk, (x, y, size)) in enumerate(order):
        cx, cy = to_frame(x, y, px, py)
        nxt = wk.at(t + 1.0 / footage.fps) or (x, y, size)
        ncx, ncy = to_frame(nxt[0], nxt[1], nx, ny)
        a_idx, b_idx, fade = wk.photo(t)
        people = sprites[wk.identity]
        rgb, alpha, face = _turned(people[a_idx % len(people)], wk.yaw(t), wk.flip)
        if fade > 0:
            rgb_b, alpha_b, _ = _turned(people[b_idx % len(people)], wk.yaw(t), wk.flip)
            if rgb_b.shape == rgb.shape:
                rgb, alpha = rgb * (1 - fade) + rgb_b * fade, alpha * (1 - fade) + alpha_b * fade
        scale = size * zoom / max(face.height, 1.0)
        side = max(4, int(round(rgb.shape[0] * scale)))
        patch = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        al = cv2.resize(alpha, (side, side), interpolation=cv2.INTER_LINEAR)
        kernel = _line_kernel(0.7 * (ncx - cx), 0.7 * (ncy - cy))
        if kernel is not None:
            patch = _f32(cv2.filter2D(patch, -1, kernel))
        fx, fy = face.center
        x0, y0 = int(round(cx - fx * scale)), int(round(cy - fy * scale))
        ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
        if ax1 > ax0 and ay1 > ay0:
            sub = patch[ay0 - y0: ay1 - y0, ax0 - x0: ax1 - x0]
            a = al[ay0 - y0: ay1 - y0, ax0 - x0: ax1 - x0, None]
            frame[ay0:ay1, ax0:ax1] = frame[ay0:ay1, ax0:ax1] * (1 - a) + sub * a
            owner[ay0:ay1, ax0:ax1][a[:, :, 0] > 0.5] = k
        box = Box(x0 + face.x1 * scale, y0 + face.y1 * scale, x0 + face.x2 * scale, y0 + face.y2 * scale)
        placed.append((wk, box))
    pan_blur = _line_kernel(0.5 * (px - nx) * zoom, 0.5 * (py - ny) * zoom)
    if pan_blur is not None:
        frame = _f32(cv2.filter2D(frame, -1, pan_blur))
    frame = _f32(frame) * shot.gain(t) * _f32(shot.tint)
    if footage.noise > 0:
        rng = np.random.default_rng(footage.seed * 100_003 + index)
        frame += rng.normal(0.0, footage.noise, (h // 2, w // 2, 1)).astype(np.float32).repeat(2, 0).repeat(2, 1)[:h, :w]
    out = np.clip(frame, 0, 255).astype(np.uint8)
    if footage.jpeg_quality < 100:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, footage.jpeg_quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = np.asarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), np.uint8)
    truth = []
    for k, (wk, box) in enumerate(placed):
        x1, y1, x2, y2 = int(max(0, box.x1)), int(max(0, box.y1)), int(min(w, box.x2)), int(min(h, box.y2))
        if x2 > x1 and y2 > y1:
            vis = float((owner[y1:y2, x1:x2] == k).sum()) / max(box.area, 1.0)
            truth.append(TruthFace(wk.identity, wk.appearance, box, min(1.0, vis)))
    return out, truth


def write(
    footage: Footage,
    sprites: Mapping[str, Sequence[Sprite]],
    path: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
) -> list[list[TruthFace]]:
    """Render every frame into a video file (codec from the extension) and return the per-frame ground truth."""
    from faceatlas.video.render import VideoWriter

    cache: dict[int, npt.NDArray[np.uint8]] = {}
    truth: list[list[TruthFace]] = []
    with VideoWriter(path, footage.fps, footage.width, footage.height) as writer:
        for i in range(footage.frame_count):
            rgb, faces = render(footage, sprites, i, cache)
            writer.write(rgb)
            truth.append(faces)
            if progress is not None:
                progress(i + 1, footage.frame_count)
    return truth


def photo_clip(identity: str, photos: int, *, seconds_per_photo: float = 1.0, fps: float = 10.0, width: int = 640,
               height: int = 360, face_px: float = 120.0) -> Footage:
    """One person's ``photos`` LFW photos in sequence (cross-faded), drifting slowly: real pose/light change per "frame"."""
    d = photos * seconds_per_photo
    walk = Walk(identity, 0, ((0.0, width * 0.4, height * 0.5, face_px), (d, width * 0.6, height * 0.45, face_px * 1.1)),
                tuple(range(photos)), switch=seconds_per_photo)
    shot = Shot(0.0, d, (walk,), ((0.0, width / 2, height / 2, 1.0), (d, width / 2 + 20, height / 2, 1.05)), 1)
    return Footage(width, height, fps, (shot,), jpeg_quality=60)


def storyboard(
    enrolled: Sequence[str],
    strangers: Sequence[str],
    *,
    duration: float = 60.0,
    fps: float = 10.0,
    width: int = 1280,
    height: int = 720,
    seed: int = 0,
) -> Footage:
    """A clip with five shots: stage, audience (strangers only), stage, audience, stage (a long-absent person returns).

    Needs three enrolled people and four strangers. On stage people enter and leave through the frame edges, cross in
    front of each other, turn their heads; the camera pans and zooms; lights dim and change tint. Audience shots put
    strangers where the enrolled people just were on screen. Each appearance shows another photo of the person.
    """
    if len(enrolled) < 3 or len(strangers) < 4:
        raise ValueError("storyboard needs 3 enrolled people and 4 strangers")
    rng = np.random.default_rng(seed)
    e0, e1, e2 = enrolled[:3]
    s0, s1, s2, s3 = strangers[:4]
    d, w, h = duration, float(width), float(height)
    n = iter(range(1, 1000))
    photo: dict[str, int] = {}

    def j(v: float, spread: float = 0.03) -> float:
        return v + float(rng.uniform(-spread, spread)) * w

    def nxt(who: str) -> tuple[int, ...]:
        photo[who] = photo.get(who, -1) + 1
        return (photo[who],)

    def walk(who: str, keys: list[Key], turns: tuple[tuple[float, float, float], ...] = (), flip: bool = False) -> Walk:
        return Walk(who, next(n), tuple(keys), nxt(who), turns, flip)

    b = [0.0, 0.25 * d, 0.35 * d, 0.65 * d, 0.72 * d, d]
    t0, t1 = b[0], b[1]
    shot1 = Shot(t0, t1, (
        walk(e0, [(t0, -80, 0.45 * h, 110), (t0 + 0.08 * d, j(0.35 * w), 0.42 * h, 120), (t1, j(0.4 * w), 0.45 * h, 125)],
             ((t0 + 0.12 * d, t0 + 0.18 * d, 0.8),)),
        walk(e1, [(t0 + 0.04 * d, w + 90, 0.5 * h, 150), (t0 + 0.16 * d, j(0.3 * w), 0.5 * h, 165),
                  (t0 + 0.2 * d, -120, 0.55 * h, 170)], ((t0 + 0.06 * d, t0 + 0.1 * d, -0.9),), flip=True),
        walk(s0, [(t0 + 0.05 * d, j(0.7 * w), h + 60, 70), (t0 + 0.1 * d, j(0.75 * w), 0.35 * h, 75),
                  (t0 + 0.2 * d, j(0.72 * w), 0.3 * h, 72), (t1, w + 60, 0.3 * h, 70)]),
    ), ((t0, w / 2, h / 2, 1.0), (t1, w / 2 + 0.12 * w, h / 2, 1.15)), 1,
        ((t0, 1.0), (t0 + 0.15 * d, 1.0), (t0 + 0.18 * d, 0.6), (t1, 0.75)))
    t0, t1 = b[1], b[2]
    # strangers where e0 stood when the shot ended (same place on screen), and beside
    shot2 = Shot(t0, t1, (
        walk(s1, [(t0, 0.4 * w - 0.12 * w * 1.15 + 0.0, 0.45 * h, 100), (t1, 0.38 * w, 0.46 * h, 100)]),
        walk(s2, [(t0, 0.62 * w, 0.4 * h, 80), (t1, 0.63 * w, 0.41 * h, 80)], ((t0 + 0.02 * d, t0 + 0.08 * d, 0.7),)),
        walk(s3, [(t0, 0.15 * w, 0.55 * h, 90), (t1, 0.16 * w, 0.56 * h, 92)]),
    ), ((t0, w / 2, h / 2, 1.0), (t1, w / 2, h / 2, 1.0)), 2, tint=(1.1, 0.95, 0.85))
    t0, t1 = b[2], b[3]
    span = t1 - t0
    shot3 = Shot(t0, t1, (
        walk(e0, [(t0, j(0.55 * w), 0.45 * h, 130), (t0 + 0.3 * span, j(0.45 * w), 0.45 * h, 135),
                  (t0 + 0.6 * span, j(0.6 * w), 0.5 * h, 140), (t1, j(0.5 * w), 0.5 * h, 135)],
             ((t0 + 0.35 * span, t0 + 0.5 * span, -0.85),), flip=True),
        walk(e2, [(t0 + 0.1 * span, -100, 0.42 * h, 95), (t0 + 0.45 * span, j(0.55 * w), 0.4 * h, 100),
                  (t0 + 0.7 * span, w + 100, 0.42 * h, 100)], ((t0 + 0.2 * span, t0 + 0.3 * span, 0.7),)),
        walk(s0, [(t0 + 0.72 * span, w + 100, 0.42 * h, 100), (t0 + 0.85 * span, j(0.75 * w), 0.42 * h, 105),
                  (t1, j(0.8 * w), 0.4 * h, 105)]),
    ), ((t0, w / 2, h / 2, 1.1), (t0 + 0.45 * span, w / 2, h / 2, 1.1), (t0 + 0.55 * span, w / 2 - 0.15 * w, h / 2, 1.0),
        (t1, w / 2 - 0.15 * w, h / 2, 0.95)), 3, ((t0, 0.9), (t0 + 0.5 * span, 1.15), (t1, 0.85)))
    t0, t1 = b[3], b[4]
    shot4 = Shot(t0, t1, (
        walk(s3, [(t0, 0.5 * w, 0.48 * h, 120), (t1, 0.52 * w, 0.47 * h, 118)]),
        walk(s1, [(t0, 0.8 * w, 0.38 * h, 85), (t1, 0.79 * w, 0.38 * h, 85)]),
        walk(s2, [(t0, 0.25 * w, 0.4 * h, 75), (t1, 0.26 * w, 0.41 * h, 75)]),
    ), ((t0, w / 2, h / 2, 1.0), (t1, w / 2, h / 2, 1.0)), 2, tint=(1.1, 0.95, 0.85))
    t0, t1 = b[4], b[5]
    span = t1 - t0
    shot5 = Shot(t0, t1, (
        walk(e1, [(t0, j(0.35 * w), 0.45 * h, 150), (t0 + 0.5 * span, j(0.5 * w), 0.48 * h, 140),
                  (t1, j(0.4 * w), 0.45 * h, 130)],
             ((t0 + 0.3 * span, t0 + 0.45 * span, 0.9),)),
        walk(e0, [(t0, j(0.7 * w), 0.45 * h, 120), (t0 + 0.4 * span, j(0.65 * w), 0.45 * h, 120),
                  (t0 + 0.6 * span, w + 100, 0.45 * h, 120)]),
        walk(e0, [(t0 + 0.75 * span, w + 100, 0.5 * h, 115), (t1, j(0.7 * w), 0.5 * h, 120)]),
    ), ((t0, w / 2, h / 2, 1.2), (t1, w / 2, h / 2, 0.95)), 4,
        ((t0, 1.0), (t0 + 0.2 * span, 0.55), (t0 + 0.3 * span, 1.0), (t1, 1.0)), tint=(0.9, 1.0, 1.1))
    return Footage(width, height, fps, (shot1, shot2, shot3, shot4, shot5), seed=seed)


def pick_photos(atlas: Any, folder: str | os.PathLike[str], show: int, enrol: int, seed: int = 0
                ) -> tuple[list[Sprite], list[Any]]:
    """Sprites from ``show`` sharp frontal photos of one LFW person, and templates of ``enrol`` OTHER photos."""
    from pathlib import Path

    from faceatlas.errors import FaceAtlasError
    from support.video_synth import make_sprite

    files = sorted(Path(folder).glob("*.jpg"))
    files = [files[k] for k in np.random.default_rng(seed).permutation(len(files))]
    sprites: list[Sprite] = []
    templates: list[Any] = []
    for path in files:
        if len(sprites) == show and len(templates) == enrol:
            break
        try:
            face, _ = atlas.template(atlas.load(path), select="central")
        except FaceAtlasError:
            continue
        lm = np.asarray(face.landmarks)
        eye = float(np.linalg.norm(lm[1] - lm[0]))
        frontal = eye > 0 and abs(float(lm[2][0]) - float(lm[0][0] + lm[1][0]) / 2) / eye < 0.22
        if len(sprites) < show and face.score >= 0.9 and face.box.height >= 90 and frontal:
            sprites.append(make_sprite(atlas.load(path).rgb, face.box, path.name))
        elif len(templates) < enrol:
            templates.append(face.template)
    return sprites, templates


def crowd(people: Sequence[str], *, duration: float = 20.0, fps: float = 10.0, width: int = 1280, height: int = 720,
          seed: int = 0) -> Footage:
    """One continuous shot with every person on screen the whole time, wandering and turning (a speed test clip)."""
    rng = np.random.default_rng(seed)
    walks = []
    for k, who in enumerate(people):
        lane = (k + 0.5) / len(people)
        keys: list[Key] = []
        for i in range(6):
            t = duration * i / 5
            keys.append((t, float(rng.uniform(lane - 0.08, lane + 0.08)) * width, float(rng.uniform(0.3, 0.6)) * height,
                         float(rng.uniform(80, 140))))
        turn = float(rng.uniform(0.2, 0.6)) * duration
        walks.append(Walk(who, k + 1, tuple(keys), (0,), ((turn, turn + 2.0, float(rng.choice([-0.8, 0.8]))),)))
    cam = ((0.0, width / 2, height / 2, 1.0), (duration, width / 2 + 0.05 * width, height / 2, 1.08))
    return Footage(width, height, fps, (Shot(0.0, duration, tuple(walks), cam, 5),), seed=seed)
