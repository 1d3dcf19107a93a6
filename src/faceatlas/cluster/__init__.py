"""Group the faces of a photo collection by person without labels, incrementally, and promote groups to a gallery.

Every face of every image is embedded; the L2-normalised templates are clustered with one of:

- ``chinese_whispers`` (default, NumPy only): label propagation on the graph whose edges join faces with cosine
  similarity >= ``threshold`` (edge weight = similarity). Each node repeatedly takes the label with the largest total
  edge weight among its neighbours (random order, fixed seed) until no label changes.
- ``components``: connected components of the same graph (simple, but one wrong edge merges two people).
- ``agglomerative``: average-linkage hierarchical clustering cut at cosine distance ``1 - threshold`` (SciPy).
- ``hdbscan`` / ``dbscan``: density-based clustering from scikit-learn (``hdbscan`` ignores ``threshold``).

Clusters smaller than ``min_size`` faces become noise. Faces too small to be recognised reliably (shorter side below
``min_face`` pixels) are never clustered and always reported as noise. The default algorithm and threshold were chosen
by measurement on LFW (``benchmarks/cluster_lfw.py``).

Incremental use: :class:`ClusterState` keeps the templates, labels and per-cluster centroids; adding photos embeds only
the new images, attaches each new face to the most similar existing centroid when the similarity reaches the
threshold, and clusters the rest together with the old noise into new clusters (existing cluster ids never change).
The state file holds face templates, which are biometric data: it is written with owner-only permissions.

Modules: :mod:`.algorithms` (clustering templates), :mod:`.metrics` (scoring against true labels), :mod:`.state`
(the state file), :mod:`.incremental` (adding faces to a state), :mod:`.photos` (folders of photos),
:mod:`.promote` (cluster to gallery person) and :mod:`.report` (HTML contact sheet).
"""

from __future__ import annotations

from typing import Any

from .algorithms import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    DEFAULT_THRESHOLDS,
    UNMEASURED_MARGIN,
    FloatMatrix,
    IntArray,
    agglomerative,
    chinese_whispers,
    cluster_vectors,
    connected_components,
    default_threshold,
    relabel,
    similarity_edges,
)
from .incremental import add_faces, summarize
from .metrics import ClusterMetrics, cluster_metrics
from .photos import IMAGE_EXTENSIONS, Progress, cluster_folder, embed_photos, list_images
from .promote import PromoteResult, promote
from .report import write_contact_sheet
from .results import Cluster, ClusterFace, ClusterResult, ImageProblem
from .state import STATE_VERSION, ClusterState

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "DEFAULT_THRESHOLDS",
    "IMAGE_EXTENSIONS",
    "STATE_VERSION",
    "UNMEASURED_MARGIN",
    "Cluster",
    "ClusterFace",
    "ClusterMetrics",
    "ClusterResult",
    "ClusterState",
    "FloatMatrix",
    "ImageProblem",
    "IntArray",
    "Progress",
    "PromoteResult",
    "add_faces",
    "agglomerative",
    "chinese_whispers",
    "cluster_folder",
    "cluster_metrics",
    "cluster_vectors",
    "connected_components",
    "default_threshold",
    "embed_photos",
    "list_images",
    "promote",
    "relabel",
    "similarity_edges",
    "summarize",
    "write_contact_sheet",
]


def __getattr__(name: str) -> Any:
    """Old names still importable, with a deprecation warning (``embed_faces`` is now :func:`embed_photos`)."""
    if name == "embed_faces":
        import warnings

        warnings.warn("faceatlas.cluster.embed_faces is renamed faceatlas.cluster.embed_photos", DeprecationWarning,
                      stacklevel=2)
        return embed_photos
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
