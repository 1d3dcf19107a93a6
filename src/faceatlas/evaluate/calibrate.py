"""Build a model's score → FAR calibration from a labelled folder (every impostor pair, computed in blocks)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..calibration import Calibration
from ..errors import InvalidInputError
from .protocols import IMAGE_EXTENSIONS
from .runner import Progress, embed_images


def labelled_images(folder: Path) -> tuple[list[Path], list[str]]:
    """Images of a one-sub-folder-per-person tree and their person labels, sorted."""
    if not folder.is_dir():
        raise InvalidInputError("invalid_input", f"{folder} is not a folder")
    paths, labels = [], []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        for img in sorted(person.iterdir()):
            if img.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(img)
                labels.append(person.name)
    if len(set(labels)) < 2:
        raise InvalidInputError("invalid_input", f"{folder} needs at least two person sub-folders with images")
    return paths, labels


def all_pair_scores(
    vectors: npt.NDArray[np.float32], labels: list[str], block: int = 2048
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Impostor and genuine cosine scores of every unordered pair of rows."""
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    imp, gen = [], []
    n = len(vectors)
    for s in range(0, n, block):
        sim = vectors[s : s + block] @ vectors.T
        rows = np.arange(s, min(n, s + block))
        upper = np.arange(n)[None, :] > rows[:, None]
        same = codes[rows][:, None] == codes[None, :]
        imp.append(sim[upper & ~same])
        gen.append(sim[upper & same])
    return np.concatenate(imp).astype(np.float32), np.concatenate(gen).astype(np.float32)


def calibrate_folder(
    atlas: Any,
    folder: Path,
    *,
    select: str = "central",
    max_images: int | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Calibration:
    """Embed a labelled folder and turn all its impostor pairs into a calibration for the atlas's model."""
    paths, labels = labelled_images(folder)
    if max_images:
        paths, labels = paths[:max_images], labels[:max_images]
    keys = [str(p.relative_to(folder)) for p in paths]
    ts = embed_images(atlas, paths, keys=keys, select=select, cache_dir=cache_dir, progress=progress)
    keep = np.flatnonzero(ts.found)
    kept_labels = [labels[i] for i in keep]
    impostor, genuine = all_pair_scores(ts.vectors[keep], kept_labels)
    if len(impostor) == 0:
        raise InvalidInputError("invalid_input", "no impostor pairs: faces were found for fewer than two people")
    label = "/".join(folder.resolve().parts[-2:])
    source = (
        f"{label}: {len(keep)} images with a face ({len(paths) - len(keep)} without), "
        f"{len(set(kept_labels))} people, all {len(impostor)} impostor pairs; select={select}, detector={atlas.detector_name}"
    )
    return Calibration.from_scores(atlas.model_id, impostor, genuine, source=source)


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def calibration_target(folder_dir: Path, model_id: str, images: Path, name: str | None,
                       out: Path | None) -> tuple[str, Path]:
    """The name and file of a new user calibration; refuses names that would hide a shipped calibration."""
    if out is not None:
        return str(out), out
    if name is None:
        stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", images.resolve().name).strip("-.") or "folder"
        name = f"{model_id}-{stem}"
    if not _NAME_RE.match(name) or name.endswith(".json"):
        raise InvalidInputError("invalid_input", f"calibration name {name!r}: use letters, digits, '.', '_', '+', '-'")
    if (resources.files("faceatlas") / "calibrations" / f"{name}.json").is_file():
        raise InvalidInputError(
            "invalid_input",
            f"calibration name {name!r} is the shipped calibration's name; choose another with --name",
        )
    return name, folder_dir / f"{name}.json"
