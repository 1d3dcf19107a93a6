"""Promoting a cluster to a gallery person (every face of the cluster becomes a sample)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError, NotFoundError
from ..types import Template
from .state import ClusterState


@dataclass(frozen=True)
class PromoteResult:
    """What promoting a cluster did to the gallery."""

    cluster: int
    collection: str
    person: str
    samples: int
    created_collection: bool
    created_person: bool
    #: the person may already exist under another id (looked up before writing; a warning, never a refusal)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        out = dict(self.__dict__)
        out["warnings"] = list(self.warnings)
        return out


def promote(
    state: ClusterState, cluster: int, gallery: Any, collection: str, person: str, name: str | None = None
) -> PromoteResult:
    """Enrol every face of a cluster as samples of a gallery person (collection and person created when missing)."""
    from ..gallery.records import check_contract

    members = state.members(cluster)
    if not members:
        raise NotFoundError(f"no cluster {cluster} in this state", cluster=cluster)
    if not person.strip():
        raise InvalidInputError("invalid_input", "the person id must not be empty")
    created_collection = False
    try:
        contract = gallery.get_collection(collection).contract
    except NotFoundError:
        gallery.create_collection(collection, state.model_id, state.model_sha256, state.dim)
        created_collection = True
    else:  # refuse before creating the person (the gallery's one contract rule, model file included)
        check_contract(contract, state.model_id, state.dim, model_sha256=state.model_sha256, what="cluster templates")
    warnings = [] if created_collection else other_ids(state, cluster, gallery, collection, person, name)
    created_person = False
    try:
        gallery.get_person(collection, person)
    except NotFoundError:
        gallery.add_person(collection, person, name or person, {"source": "faceatlas cluster promote"})
        created_person = True
    templates = [Template(state.vectors[k], state.model_id) for k in members]
    faces = [state.faces[k] for k in members]
    gallery.add_samples(
        collection, person, templates,
        qualities=[f.quality for f in faces], detection_scores=[f.score for f in faces], boxes=[f.box for f in faces],
    )
    state.promoted[cluster] = {"collection": collection, "person": person, "samples": len(members)}
    return PromoteResult(cluster, collection, person, len(members), created_collection, created_person,
                         tuple(warnings))


def other_ids(state: ClusterState, cluster: int, gallery: Any, collection: str, person: str,
              name: str | None = None) -> list[str]:
    """Signs that the cluster's person is already in ``collection`` under another id (one sentence each).

    Two checks: at least half of the cluster's faces match one other person at or above the clustering threshold
    (the same face-to-face similarity that built the cluster), and a new person's display name equals another
    person's name or id (case-insensitive).
    """
    out: list[str] = []
    members = state.members(cluster)
    hits = gallery.search(collection, np.asarray(state.vectors[members], np.float32), k=2, model_id=state.model_id)
    votes: Counter[str] = Counter()
    best: dict[str, float] = {}
    for cands in hits:
        other = next((c for c in cands if c.external_id != person), None)
        if other is not None and other.score >= state.threshold:
            votes[other.external_id] += 1
            best[other.external_id] = max(best.get(other.external_id, -1.0), float(other.score))
    if votes:
        pid, n = votes.most_common(1)[0]
        if 2 * n >= len(members):
            out.append(f"{n} of {len(members)} faces of cluster {cluster} match person {pid!r} (best score "
                       f"{best[pid]:.3f} >= threshold {state.threshold:.3f}): this person may already be enrolled "
                       f"as {pid!r}")
    try:
        gallery.get_person(collection, person)
    except NotFoundError:
        label = (name or person).strip().casefold()
        for p in gallery.list_persons(collection):
            if p.external_id != person and label in (p.external_id.casefold(), (p.name or "").strip().casefold()):
                out.append(f"a person named {(name or person)!r} already exists as id {p.external_id!r}")
                break
    return out
