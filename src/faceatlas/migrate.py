"""Move a collection to another embedding model using the aligned crops stored at enrolment."""

from __future__ import annotations

from typing import Any

import numpy as np

from .align import ARCFACE_112
from .errors import FaceAtlasError, NotFoundError
from .types import Template


def reembed_collection(rec: Any, source: str, target: str) -> tuple[int, int]:
    """Re-embed every stored crop of ``source`` into a new collection ``target``; return (moved, without crop)."""
    import cv2

    g = rec.gallery
    g.get_collection(source)
    emb = rec.atlas.embedder
    members = getattr(emb, "members", [(emb, 1.0)])
    if any(m.template != "arcface112" for m, _ in members):
        raise FaceAtlasError(
            "reembed_unsupported", f"{emb.model_id} aligns faces differently from the stored 112×112 crops; re-enrol from photos"
        )
    rec.ensure_collection(target)
    moved = missing = 0
    for person in g.list_persons(source):
        samples = g.list_samples(source, person.id)
        crops, kept = [], []
        for s in samples:
            data = g.get_crop(source, s.id) if s.has_crop else None
            if data is None:
                missing += 1
                continue
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                missing += 1
                continue
            crops.append(np.ascontiguousarray(bgr[:, :, ::-1]))
            kept.append((s, data))
        if not crops:
            continue
        vectors = emb.embed_faces([(c, ARCFACE_112) for c in crops])
        try:
            new_person = g.get_person(target, person.external_id)
        except NotFoundError:
            new_person = g.add_person(target, person.external_id, name=person.name, metadata=dict(person.metadata))
        g.add_samples(
            target,
            new_person.id,
            [Template(v, rec.atlas.embedder.model_id) for v in vectors],
            qualities=[s.quality for s, _ in kept],
            detection_scores=[s.detection_score for s, _ in kept],
            boxes=[s.box for s, _ in kept],
            image_sha256=[s.image_sha256 for s, _ in kept],
            crops=[d for _, d in kept],
        )
        moved += len(kept)
    return moved, missing
