"""Glue between the CLI commands and the Ray pool: worker settings, the enrolment stream, the closing note."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def worker_settings(ctx: Any, pipeline: Any) -> dict[str, Any]:
    """FaceAtlas constructor arguments that rebuild ``pipeline`` in a worker (one model thread)."""
    from ..cli.common import options

    opts = options(ctx)
    settings: dict[str, Any] = {"detector": pipeline.detector_name, "embedder": pipeline.model_id, "threads": 1}
    for name in ("models_dir", "offline", "calibration"):
        value = getattr(opts, name, None)
        if value is not None:
            settings[name] = str(value) if isinstance(value, Path) else value
    return settings


def ray_enrol_source(
    address: str, actors: int, ctx: Any, rec: Any, collection: str, by_person: dict[str, list[Path]],
    multi_face: str, gates: Any, tally: Any,
) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    """``enroll-dir --ray``: people in name order with each image's PreparedFace, Rejection or Skipped.

    Images the collection already holds (by sha256) are skipped by the workers, so a re-run finishes the rest only.
    Sets ``tally.rate_note`` to the throughput and the images handled per Ray node when done.
    """
    from .ray_runner import NodeTally, RayPhotoPool, enrol_by_person, enrolled_hashes, guard_stdout

    known = enrolled_hashes(rec.gallery, collection)
    paths = [str(p) for person in sorted(by_person) for p in by_person[person]]
    labels = [person for person in sorted(by_person) for _ in by_person[person]]
    guard_stdout()
    pool = RayPhotoPool(address, worker_settings(ctx, rec.pipeline), actors=actors, known=known)
    nodes = NodeTally()
    start = time.perf_counter()
    try:
        yield from enrol_by_person(pool, paths, labels, nodes, multi_face=multi_face, gates=gates)
    finally:
        seconds = time.perf_counter() - start
        per_node = ", ".join(f"{node[:8]} {n}" for node, n in sorted(nodes.nodes.items()))
        tally.rate_note = (f" ({len(paths) / max(seconds, 1e-9):.1f} images/s on {len(pool.actors)} Ray actors; "
                           f"images per node: {per_node})")
        pool.shutdown()
