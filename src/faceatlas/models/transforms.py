"""One-time ONNX graph rewrites that make shipped model files loadable, batchable and fast."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError
from .manifest import TRANSFORMS_VERSION as TRANSFORMS_VERSION  # defined there: reading it must not import this

if TYPE_CHECKING:  # pragma: no cover
    import onnx

log = logging.getLogger(__name__)


def apply_transforms(data: bytes, names: tuple[str, ...]) -> bytes:
    """Apply the named transforms, in order, to a serialised ONNX model."""
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - onnx raises assorted protobuf errors
        raise ModelError("model_invalid", f"cannot parse ONNX model: {exc}") from None
    for name in names:
        fn = TRANSFORMS.get(name)
        if fn is None:
            raise ModelError("model_invalid", f"unknown model transform {name!r}")
        fn(model)
        log.debug("applied transform %s", name)
    return bytes(model.SerializeToString())


def strip_initializer_inputs(model: onnx.ModelProto) -> None:
    """Drop graph inputs that are really weights: initializers, node outputs, or inputs nothing reads."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    produced = {o for n in graph.node for o in n.output}
    consumed = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.input if i.name not in inits and i.name not in produced and i.name in consumed]
    del graph.input[:]
    graph.input.extend(keep)


def dynamic_batch(model: onnx.ModelProto) -> None:
    """Make the first dimension of every graph input and output symbolic ('batch')."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"


def dynamic_input(model: onnx.ModelProto) -> None:
    """Make every input and output dimension symbolic except the channel axis (for fully convolutional nets)."""
    names = ("batch", "channels", "height", "width")
    for value in model.graph.input:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if i != 1:
                dim.ClearField("dim_value")
                dim.dim_param = names[i] if i < len(names) else f"d{i}"
    for value in model.graph.output:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if i != len(value.type.tensor_type.shape.dim) - 1:
                dim.ClearField("dim_value")
                dim.dim_param = f"{value.name}_d{i}"


def fold_constants(model: onnx.ModelProto) -> None:
    """Evaluate every node whose inputs are all constants once and store its outputs as initializers."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    _constant_nodes_to_initializers(graph)
    while True:
        consts = {i.name for i in graph.initializer}
        graph_inputs = {i.name for i in graph.input}
        foldable = [
            n for n in graph.node
            if n.op_type not in _NEVER_FOLD
            and all((not x) or (x in consts and x not in graph_inputs) for x in n.input)
        ]
        if not foldable:
            break
        values = {n.output[0]: _evaluate_dequantize(graph, n) for n in foldable if n.op_type == "DequantizeLinear"}
        others = [n for n in foldable if n.op_type != "DequantizeLinear"]
        if others:
            values.update(_evaluate(model, others))
        folded = {id(n) for n in foldable}
        remaining = [n for n in graph.node if id(n) not in folded]
        del graph.node[:]
        graph.node.extend(remaining)
        for name, arr in values.items():
            graph.initializer.append(numpy_helper.from_array(arr, name))
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)


_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def _constant_nodes_to_initializers(graph: Any) -> None:
    """Turn ``Constant`` nodes holding a tensor into initializers."""
    from onnx import numpy_helper

    remaining = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(np.asarray(arr), node.output[0]))
        else:
            remaining.append(node)
    del graph.node[:]
    graph.node.extend(remaining)


def dequantize(
    q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1, block_size: int = 0
) -> np.ndarray:
    """DequantizeLinear semantics (per-tensor, per-axis or blocked) computed in float32."""
    x = q.astype(np.int32)
    zp = np.zeros((), np.int32) if zero_point is None else zero_point.astype(np.int32)
    sc = scale.astype(np.float32)
    if sc.size == 1:
        return ((x - zp.reshape(())).astype(np.float32) * sc.reshape(())).astype(np.float32)
    axis = axis % q.ndim
    if block_size > 0:
        sc = np.repeat(sc, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
        if zp.ndim:
            zp = np.repeat(zp, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
    else:
        shape = [1] * q.ndim
        shape[axis] = -1
        sc = sc.reshape(shape)
        zp = zp.reshape(shape) if zp.ndim else zp
    return ((x - zp).astype(np.float32) * sc).astype(np.float32)


def _evaluate_dequantize(graph: Any, node: Any) -> np.ndarray:
    """Evaluate one DequantizeLinear node whose inputs are initializers."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    args = [numpy_helper.to_array(inits[x]) if x else None for x in node.input]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    q, scale = args[0], args[1]
    assert q is not None and scale is not None
    zero_point = args[2] if len(args) > 2 else None
    return dequantize(q, scale, zero_point, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))


def _evaluate(model: onnx.ModelProto, nodes: list[Any]) -> dict[str, np.ndarray]:
    """Run a sub-graph made of ``nodes`` (constant inputs only) and return every output by name."""
    import onnxruntime as ort
    from onnx import helper

    needed = {x for n in nodes for x in n.input if x}
    inits = [i for i in model.graph.initializer if i.name in needed]
    outputs = [o for n in nodes for o in n.output if o]
    sub_graph = helper.make_graph(
        nodes, "fold", inputs=[], outputs=[helper.make_empty_tensor_value_info(o) for o in outputs],
        initializer=inits,
    )
    sub = helper.make_model(sub_graph, opset_imports=list(model.opset_import))
    sub.ir_version = model.ir_version
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(sub.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        results = sess.run(outputs, {})
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError("model_invalid", f"constant folding failed: {exc}") from None
    return {name: np.asarray(val) for name, val in zip(outputs, results, strict=False)}


def prelu_to_relu(model: onnx.ModelProto) -> None:
    """Rewrite each PRelu with constant slopes as ``y + (1 - s) * Relu(-y)``, which ORT runs fused in NCHWc layout."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes: list[Any] = []
    for node in graph.node:
        slope = inits.get(node.input[1]) if node.op_type == "PRelu" and len(node.input) == 2 else None
        if slope is None:
            nodes.append(node)
            continue
        y, out = node.input[0], node.output[0]
        s = numpy_helper.to_array(slope).astype(np.float32)
        base = f"{out}__prelu"
        # Same shape as the slope, so broadcasting is exactly PRelu's; -1 as a Mul (not Neg) keeps ORT in NCHWc.
        graph.initializer.append(numpy_helper.from_array(-np.ones_like(s), f"{base}_minus1"))
        graph.initializer.append(numpy_helper.from_array((1.0 - s).astype(np.float32), f"{base}_k"))
        nodes += [
            helper.make_node("Mul", [y, f"{base}_minus1"], [f"{base}_neg"]),
            helper.make_node("Relu", [f"{base}_neg"], [f"{base}_relu"]),
            helper.make_node("Mul", [f"{base}_relu", f"{base}_k"], [f"{base}_scaled"]),
            helper.make_node("Add", [y, f"{base}_scaled"], [out]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {x for n in graph.node for x in n.input}
    keep = [i for i in graph.initializer if i.name in used or i.name in {o.name for o in graph.output}]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def flush_denormals(model: onnx.ModelProto) -> None:
    """Set float32 weights too small to be normal numbers (|w| < 1.18e-38) to zero: they slow CPU kernels ~10x."""
    from onnx import numpy_helper

    tiny = np.finfo(np.float32).tiny
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32:
            continue
        mask = (arr != 0) & (np.abs(arr) < tiny)
        if mask.any():
            init.CopyFrom(numpy_helper.from_array(np.where(mask, np.float32(0), arr).astype(np.float32), init.name))


TRANSFORMS: dict[str, Callable[[Any], None]] = {
    "prelu_to_relu": prelu_to_relu,
    "flush_denormals": flush_denormals,
    "strip_initializer_inputs": strip_initializer_inputs,
    "fold_constants": fold_constants,
    "dynamic_batch": dynamic_batch,
    "dynamic_input": dynamic_input,
}
