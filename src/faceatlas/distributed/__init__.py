"""Past one machine: bulk enrolment, embedding and clustering's photo work on Ray actors; the driver writes alone.

Ray is optional (``pip install 'faceatlas[ray]'``) and imported only when a command asks for it.
"""

from __future__ import annotations

from .worker import ChunkResult, FaceRow, ImageRows, PhotoWorker, Skipped, file_sha256

__all__ = ["ChunkResult", "FaceRow", "ImageRows", "PhotoWorker", "Skipped", "file_sha256"]
