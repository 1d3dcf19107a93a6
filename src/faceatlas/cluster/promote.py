"""Promoting a cluster to a gallery person (every face of the cluster becomes a sample)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return dict(self.__dict__)


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
    return PromoteResult(cluster, collection, person, len(members), created_collection, created_person)
