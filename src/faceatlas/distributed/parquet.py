"""Templates to Parquet (``embed-dir``): one row per face with its box, scores, image hash and template."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import FaceAtlasError
from .worker import FaceRow

#: Rows buffered before a Parquet row group is written.
ROW_GROUP = 4096


def _pyarrow() -> Any:
    """pyarrow, or a clear error when it is missing."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401  (registers pa.parquet)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FaceAtlasError("missing_dependency", "embed-dir needs pyarrow: pip install pyarrow") from exc
    return pa


class TemplateWriter:
    """Streams FaceRows into a Parquet file; the schema metadata names the model and template size."""

    def __init__(self, path: Path, model_id: str, dim: int) -> None:
        pa = self.pa = _pyarrow()
        self.path = path
        self.dim = dim
        self.schema = pa.schema(
            [("path", pa.string()), ("image_sha256", pa.string()), ("face_index", pa.int32()),
             ("box_x", pa.float32()), ("box_y", pa.float32()), ("box_w", pa.float32()), ("box_h", pa.float32()),
             ("det_score", pa.float32()), ("quality", pa.float32()), ("template", pa.list_(pa.float32(), dim))],
            metadata={"faceatlas.model_id": model_id, "faceatlas.dim": str(dim)},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pa.parquet.ParquetWriter(str(path), self.schema)
        self._rows: list[FaceRow] = []
        self.written = 0

    def add(self, rows: Sequence[FaceRow]) -> None:
        """Queue rows (written in row groups)."""
        self._rows.extend(rows)
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        """Write the queued rows as one row group."""
        if not self._rows:
            return
        import numpy as np

        pa, rows = self.pa, self._rows
        flat = np.concatenate([r.template for r in rows]).astype(np.float32, copy=False)
        cols = [
            pa.array([r.source for r in rows], pa.string()),
            pa.array([r.image_sha256 for r in rows], pa.string()),
            pa.array([r.face_index for r in rows], pa.int32()),
            *(pa.array([r.box[i] for r in rows], pa.float32()) for i in range(4)),
            pa.array([r.det_score for r in rows], pa.float32()),
            pa.array([r.quality for r in rows], pa.float32()),
            pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), self.dim),
        ]
        self._writer.write_table(pa.Table.from_arrays(cols, schema=self.schema))
        self.written += len(rows)
        self._rows = []

    def close(self) -> None:
        """Write what is left and finish the file."""
        self._flush()
        self._writer.close()
