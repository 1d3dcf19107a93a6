"""ONNX Runtime session factory: one place that sets threads, providers and logging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import config
from ..errors import ModelError


def create_session(path: Path, threads: int | None = None, *, prepack: bool = True) -> Any:
    """Open an ONNX Runtime CPU session for a model file (thread-safe for concurrent ``run``).

    ``prepack=False`` skips ORT's weight pre-packing: SFace's session opens ~30 ms faster and runs as fast.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or config.default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Spin-waiting worker threads burn the cores they wait on: on a 2-core machine shared with decoding, other
    # requests or other programs that made SFace ~1.7x slower (benchmarks/speed.py). Opt back in with FACEATLAS_SPIN=1.
    spin = "1" if config.spin_wait() else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if not prepack:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    providers = config.providers()
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError("model_invalid", f"cannot load model {path.name}: {exc}") from None
