"""Move a collection to another embedding model using the aligned crops stored at enrolment."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NotFoundError


def reembed_collection(rec: Any, source: str, target: str) -> tuple[int, int]:
    """Re-embed every stored crop of ``source`` into a new collection ``target``; return (moved, without crop)."""
    import cv2

    g = rec.gallery
    g.get_collection(source)
    pipe = rec.pipeline
    pipe.embed_aligned(np.zeros((0, 112, 112, 3), np.uint8))  # reembed_unsupported before any write
    rec.ensure_collection(target)
    moved = missing = 0
    for person in g.list_persons(source):
        crops, kept = [], []
        for s in g.list_samples(source, person.id):
            data = g.get_crop(source, s.id) if s.has_crop else None
            bgr = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                missing += 1
                continue
            crops.append(np.ascontiguousarray(bgr[:, :, ::-1]))
            kept.append((s, data))
        if not crops:
            continue
        templates = pipe.embed_aligned(np.stack(crops))
        try:
            new_person = g.get_person(target, person.external_id)
        except NotFoundError:
            new_person = g.add_person(target, person.external_id, name=person.name, metadata=dict(person.metadata))
        g.add_samples(
            target,
            new_person.id,
            templates,
            qualities=[s.quality for s, _ in kept],
            detection_scores=[s.detection_score for s, _ in kept],
            boxes=[s.box for s, _ in kept],
            image_sha256=[s.image_sha256 for s, _ in kept],
            crops=[d for _, d in kept],
        )
        moved += len(kept)
    return moved, missing
