"""Helpers shared by the benchmark scripts: repository paths, LFW pairs, statistics, tables and JSON output.

Not a benchmark itself; the scripts beside it import it (``python benchmarks/<script>.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"


def default_models_dir() -> Path:
    """``FACEATLAS_MODELS`` or ``../shared/models`` beside the repository."""
    env = os.environ.get("FACEATLAS_MODELS")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "models"


def default_data_dir() -> Path:
    """``FACEATLAS_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("FACEATLAS_DATA")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


def default_out(name: str) -> Path:
    """Default JSON result path for benchmark ``name``."""
    return RESULTS_DIR / f"{name}.json"


def progress(message: str) -> None:
    """One progress line on stderr (results go to stdout)."""
    print(message, file=sys.stderr, flush=True)


# -- LFW ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LfwPair:
    """One View-2 pair: image paths relative to ``lfw/images``, whether it is the same person, its fold (0-based)."""

    a: str
    b: str
    same: bool
    fold: int


def lfw_relpath(name: str, number: int) -> str:
    """``Person/Person_NNNN.jpg`` for a person and 1-based image number."""
    return f"{name}/{name}_{number:04d}.jpg"


def read_lfw_pairs(path: Path) -> tuple[int, int, list[LfwPair]]:
    """Parse ``pairs.txt``: header ``folds per_fold``, then per fold ``per_fold`` matched + ``per_fold`` mismatched."""
    lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines or len(lines[0]) != 2:
        raise ValueError(f"{path}: first line must be '<folds> <pairs per half fold>'")
    folds, per = int(lines[0][0]), int(lines[0][1])
    body = lines[1:]
    if len(body) != folds * 2 * per:
        raise ValueError(f"{path}: expected {folds * 2 * per} pair lines, found {len(body)}")
    pairs: list[LfwPair] = []
    for k, tok in enumerate(body):
        fold = k // (2 * per)
        if len(tok) == 3:
            pairs.append(LfwPair(lfw_relpath(tok[0], int(tok[1])), lfw_relpath(tok[0], int(tok[2])), True, fold))
        elif len(tok) == 4:
            pairs.append(LfwPair(lfw_relpath(tok[0], int(tok[1])), lfw_relpath(tok[2], int(tok[3])), False, fold))
        else:
            raise ValueError(f"{path}:{k + 2}: expected 3 or 4 fields, got {len(tok)}")
        expect_same = (k % (2 * per)) < per
        if pairs[-1].same != expect_same:
            raise ValueError(f"{path}:{k + 2}: a {'matched' if expect_same else 'mismatched'} pair was expected here")
    return folds, per, pairs


def distinct_images(pairs: Sequence[LfwPair]) -> list[str]:
    """Every image the pairs reference, once, in first-seen order."""
    seen: dict[str, None] = {}
    for p in pairs:
        seen.setdefault(p.a)
        seen.setdefault(p.b)
    return list(seen)


# -- statistics and output ------------------------------------------------------------------------------------


def summarize_ms(samples_ms: Sequence[float]) -> dict[str, float]:
    """Median, p90, mean, min and max of timings in milliseconds."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "median": float("nan"), "p90": float("nan"), "mean": float("nan"), "min": float("nan"),
                "max": float("nan")}
    return {
        "n": int(arr.size),
        "median": float(np.median(arr)),
        "p90": float(np.percentile(arr, 90)),
        "mean": float(arr.mean()),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def environment() -> dict[str, Any]:
    """Versions and machine facts worth keeping next to any number."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    for mod in ("numpy", "cv2", "onnxruntime", "faceatlas"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as exc:
            info[mod] = f"unavailable ({exc})"
    return info


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write the results as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8")
    print(f"\nresults written to {path}")


def _json_default(obj: Any) -> Any:
    """JSON for numpy scalars/arrays and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """Print a plain fixed-width table (numbers right-aligned)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    # a column is right-aligned only when every cell in it is a number
    numeric = [all(_is_number(raw[i]) for raw in rows) for i in range(len(headers))]
    for row in cells:
        line = "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True))
        print(line.rstrip())


def _is_number(value: Any) -> bool:
    """True for ints and floats (numpy ones too), not for bools."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    """Table cell text: floats with a sensible number of decimals."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)
