"""Staged presentation attacks: LFW faces re-rendered as print and screen replays (no labelled PAD data was at hand).

Each attack image is one LFW photo (chosen with a seeded RNG) put through a simulated capture chain:

* ``print``: the photo printed on paper (halftone dots, paper-white margin, ink gamut squeeze, paper texture),
  lying on a desk, re-photographed at an angle (perspective), uneven light, lens blur, JPEG;
* ``screen``: the photo shown on a monitor (RGB sub-pixel grid sampled by the camera → moiré, backlight gamma and
  blue cast, a specular glare band), perspective, JPEG re-compression;
* ``phone``: the photo on a phone held up to the camera (black bezel with rounded corners, notch, moiré, glare),
  the phone smaller in the frame and tilted.

These are simulations, not real attacks: they show what a single-frame check reacts to, not how it fares against
real printers, screens or masks. ``python benchmarks/spoof_synth.py OUT_DIR --n 1500`` writes the images alone.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

KINDS = ("print", "screen", "phone")
Image = np.ndarray


def _jpeg(img: Image, quality: int) -> Image:
    """Round-trip through JPEG at ``quality``."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _gamma(img: Image, g: float) -> Image:
    """Apply a gamma curve."""
    return np.clip(255.0 * (img / 255.0) ** g, 0, 255).astype(np.uint8)


def _halftone(img: Image, rng: random.Random) -> Image:
    """Printer look: a fine dot screen modulating each channel, a squeezed gamut and paper texture."""
    h, w = img.shape[:2]
    period = rng.uniform(2.2, 3.5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(rng.uniform(10, 80))
    dots = (np.cos((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period)
            * np.cos((-xx * np.sin(a) + yy * np.cos(a)) * 2 * np.pi / period))
    out = img.astype(np.float32) * 0.82 + 25.0  # ink never reaches black, paper never pure white
    out += dots[..., None] * rng.uniform(6, 14)
    out += np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(2, 5), (h, w, 1))
    return np.clip(out, 0, 255).astype(np.uint8)


def _moire(img: Image, rng: random.Random) -> Image:
    """Screen look: magnify onto an RGB stripe sub-pixel grid, then resample back (aliasing gives moiré)."""
    h, w = img.shape[:2]
    k = rng.choice([3, 4])
    big = cv2.resize(img, (w * k, h * k), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    mask = np.zeros((h * k, w * k, 3), np.float32) + 0.35
    for c in range(3):  # BGR order in OpenCV: blue column last
        mask[:, (2 - c)::3, c] = 1.0
    mask[(k - 1)::k, :, :] *= 0.55  # dark rows between pixel rows
    big *= mask * 1.45
    angle = rng.uniform(-4, 4)
    scale = rng.uniform(0.93, 1.07) / k
    m = cv2.getRotationMatrix2D((w * k / 2, h * k / 2), angle, 1.0)
    big = cv2.warpAffine(np.clip(big, 0, 255).astype(np.uint8), m, (w * k, h * k), borderMode=cv2.BORDER_REFLECT)
    return cv2.resize(big, (int(w * k * scale), int(h * k * scale)), interpolation=cv2.INTER_LINEAR)


def _glare(img: Image, rng: random.Random, strength: float) -> Image:
    """A soft diagonal specular band."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(rng.uniform(0, 180))
    d = (xx - w * rng.uniform(0.2, 0.8)) * np.cos(a) + (yy - h * rng.uniform(0.2, 0.8)) * np.sin(a)
    band = np.exp(-(d / (0.12 * max(h, w))) ** 2) * strength
    return np.clip(img.astype(np.float32) + band[..., None], 0, 255).astype(np.uint8)


def _background(size: int, rng: random.Random) -> Image:
    """A plausible, blurred scene behind the replayed photo (desk, wall, office)."""
    base = np.array([rng.randint(30, 220) for _ in range(3)], np.float32)
    g = np.random.default_rng(rng.randrange(1 << 30))
    noise = cv2.GaussianBlur(g.normal(0, 25, (size, size, 3)).astype(np.float32), (0, 0), rng.uniform(3, 15))
    yy = np.linspace(-30, 30, size, dtype=np.float32)[:, None, None]
    return np.clip(base + noise + yy * rng.uniform(-1, 1), 0, 255).astype(np.uint8)


def _place(content: Image, canvas: Image, rng: random.Random, fill: float, tilt: float) -> Image:
    """Warp ``content`` into ``canvas`` with a random perspective (``fill``: share of the canvas width)."""
    h, w = content.shape[:2]
    size = canvas.shape[0]
    tw = size * fill
    th = tw * h / w
    cx, cy = size / 2 + rng.uniform(-0.08, 0.08) * size, size / 2 + rng.uniform(-0.08, 0.08) * size
    corners = np.array([[-tw / 2, -th / 2], [tw / 2, -th / 2], [tw / 2, th / 2], [-tw / 2, th / 2]], np.float32)
    corners += np.array([[rng.uniform(-tilt, tilt) * tw for _ in range(2)] for _ in range(4)], np.float32)
    ang = np.deg2rad(rng.uniform(-12, 12))
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
    dst = corners @ rot.T + [cx, cy]
    m = cv2.getPerspectiveTransform(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32), dst.astype(np.float32))
    warped = cv2.warpPerspective(content, m, (size, size))
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), m, (size, size))
    mask = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)[..., None] / 255.0
    return (canvas * (1 - mask) + warped * mask).astype(np.uint8)


def _light(img: Image, rng: random.Random) -> Image:
    """Uneven room light across the frame."""
    h, w = img.shape[:2]
    xx = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.2), w, dtype=np.float32)
    return np.clip(img * xx[None, :, None], 0, 255).astype(np.uint8)


def render(photo: Image, kind: str, rng: random.Random, size: int = 360) -> Image:
    """One staged attack of ``kind`` from a BGR photo."""
    if kind == "print":
        margin = rng.randint(6, 20)
        paper = cv2.copyMakeBorder(photo, margin, margin, margin, margin, cv2.BORDER_CONSTANT,
                                   value=[rng.randint(225, 250)] * 3)
        content = _halftone(cv2.resize(paper, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC), rng)
        out = _place(content, _background(size, rng), rng, rng.uniform(0.75, 0.95), 0.06)
        out = _light(_gamma(out, rng.uniform(0.8, 1.3)), rng)
    else:
        screen = _moire(photo, rng)
        screen = _gamma(screen, rng.uniform(0.6, 0.95))
        screen = np.clip(screen.astype(np.float32) * [rng.uniform(1.0, 1.15), 1.0, rng.uniform(0.85, 1.0)], 0,
                         255).astype(np.uint8)
        if kind == "phone":
            h, w = screen.shape[:2]
            b = max(8, w // 14)
            body = np.zeros((h + 2 * b + b, w + 2 * b, 3), np.uint8) + rng.randint(5, 35)
            body[b + b // 2:b + b // 2 + h, b:b + w] = screen
            cv2.ellipse(body, ((w + 2 * b) // 2, b // 2 + b // 3), (w // 8, b // 3), 0, 0, 360, (0, 0, 0), -1)
            screen = body
            fill, tilt = rng.uniform(0.6, 0.85), 0.05
        else:
            fill, tilt = rng.uniform(0.8, 1.0), 0.04
        screen = _glare(screen, rng, rng.uniform(20, 70))
        out = _place(screen, _background(size, rng), rng, fill, tilt)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.1))
    return _jpeg(out, rng.randint(55, 90))


def render_attacks(sources: Sequence[Path], folder: Path, n: int, seed: int = 14) -> list[Path]:
    """Write ``n`` attacks (kinds in turn) from randomly chosen sources into ``folder``; reuse existing ones."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    picks = rng.sample(list(sources), n)
    out = []
    for i, src in enumerate(picks):
        kind = KINDS[i % len(KINDS)]
        path = folder / f"{kind}_{i:05d}_{src.stem}.jpg"
        if not path.is_file():
            photo = cv2.imread(str(src), cv2.IMREAD_COLOR)
            cv2.imwrite(str(path), render(photo, kind, random.Random(seed * 100003 + i)))
        out.append(path)
    return out


def main() -> None:
    """Write attack images to a folder."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--lfw", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/lfw/images")
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    made = render_attacks(sorted(args.lfw.glob("*/*.jpg")), args.out, args.n, args.seed)
    print(f"{len(made)} images in {args.out}")


if __name__ == "__main__":
    main()
