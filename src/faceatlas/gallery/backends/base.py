"""Where a gallery keeps templates and how it searches them: the vault and search backend interfaces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from faceatlas.gallery.backends.location import BackendKind
from faceatlas.gallery.records import EmbeddingContract, WriteReceipt

Hits = list[list[tuple[int, float, int]]]  # per query: (person id, score, sample id), best first


class TemplateVault(ABC):
    """Template storage outside the SQLite file; called by the store inside its write transactions."""

    store_kind: str = "external"

    @abstractmethod
    def bind_namespace(self, namespace: str) -> None:
        """Set the per-gallery prefix of every external name (kept in the metadata file)."""

    @abstractmethod
    def create_collection(self, collection_id: int, contract: EmbeddingContract) -> None:
        """Create the (empty) template storage of a new collection, replacing any leftover of that id."""

    @abstractmethod
    def drop_collection(self, collection_id: int) -> None:
        """Remove a collection's templates and centroids (no error if absent)."""

    @abstractmethod
    def put(
        self, collection_id: int, sample_ids: Sequence[int], person_id: int, vectors: npt.NDArray[np.float32]
    ) -> None:
        """Store (or replace) templates of one person under their sample ids."""

    @abstractmethod
    def put_many(
        self,
        collection_id: int,
        sample_ids: Sequence[int],
        person_ids: Sequence[int],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        """Store (or replace) templates of several persons: row ``i`` belongs to ``person_ids[i]``."""

    @abstractmethod
    def delete(self, collection_id: int, sample_ids: Sequence[int]) -> None:
        """Remove templates by sample id (unknown ids are ignored)."""

    @abstractmethod
    def get(self, collection_id: int, sample_ids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        """Return the stored templates of the ids that exist."""

    @abstractmethod
    def set_centroids(
        self,
        collection_id: int,
        person_samples: Mapping[int, Sequence[int]],
        known: Mapping[int, npt.NDArray[np.float32]] | None = None,
    ) -> None:
        """Recompute the centroids of some persons from their samples (none: drop it); ``known`` spares reads."""


class SearchBackend(ABC):
    """Template search of one gallery, told about every committed write by the ``Gallery`` facade."""

    kind: BackendKind = "sqlite"

    @abstractmethod
    def refresh(self) -> list[str]:
        """Pick up changes made elsewhere now; return the collections whose search state was rebuilt."""

    @abstractmethod
    def contract(self, collection: str) -> EmbeddingContract:
        """Return a collection's embedding contract (``not_found`` if the collection does not exist)."""

    @abstractmethod
    def search(self, collection: str, queries: npt.NDArray[np.float32], k: int, aggregate: str) -> Hits:
        """Best ``k`` persons per normalised query as ``(person id, score, sample id)``, best first."""

    @abstractmethod
    def index_info(self, collection: str) -> tuple[int, str | None]:
        """Return how many templates are searchable in a collection and the index kind."""

    @abstractmethod
    def collection_created(self, collection: str, collection_id: int, contract: EmbeddingContract) -> None:
        """React to a committed ``create_collection``."""

    @abstractmethod
    def collection_dropped(self, collection: str) -> None:
        """React to a committed ``delete_collection``."""

    @abstractmethod
    def collection_imported(self, collection: str) -> None:
        """React to a committed ``import_collection``."""

    @abstractmethod
    def samples_added(self, collection: str, receipt: WriteReceipt, vectors: npt.NDArray[np.float32]) -> None:
        """React to committed new samples."""

    @abstractmethod
    def samples_removed(self, collection: str, receipt: WriteReceipt, person_deleted: bool) -> None:
        """React to committed sample deletions (a whole person when ``person_deleted``)."""

    @abstractmethod
    def check(self) -> list[str]:
        """Read every template back and report the problems found."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds."""
