"""Graph surgery on ``onnx.ModelProto``: the pieces of a model that the backend runs.

Every function here builds a *new* ``ModelProto`` and leaves the one it is given untouched.
A value of the graph (a node output, a graph input) is addressed by its name; ONNX graphs
are in static single assignment form, so each value is produced once per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "graph_inputs",
    "node_outputs",
    "node_inputs",
    "cut",
    "downstream",
    "frontier",
    "value_types",
    "inferred_shapes",
]


def graph_inputs(model: Any) -> list[Any]:
    """The graph's real inputs: ``graph.input`` minus initializers (IR < 4 lists the
    weights as inputs too)."""
    weights = {t.name for t in model.graph.initializer} | {t.values.name for t in model.graph.sparse_initializer}
    return [i for i in model.graph.input if i.name not in weights]


def node_outputs(model: Any) -> list[str]:
    """Every value a top-level node produces, in graph (topological) order."""
    return [name for node in model.graph.node for name in node.output if name]


def _subgraphs(node: Any) -> Iterable[Any]:
    import onnx

    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _outer_names(graph: Any) -> set[str]:
    """Names a subgraph (an ``If`` branch, a ``Loop`` body) reads from enclosing scopes."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(node_inputs(node))
        defined.update(node.output)
    return used - defined - {""}


def node_inputs(node: Any) -> list[str]:
    """The values ``node`` reads: its inputs and what its subgraphs read from outside them."""
    names = [n for n in node.input if n]
    for graph in _subgraphs(node):
        names += sorted(_outer_names(graph))
    return names


#: Operations whose outputs describe their input's shape, not its values.
SHAPE_OPS = frozenset({"Shape", "Size"})


def downstream(model: Any, value: str, *, through_shape: bool = True) -> set[int]:
    """Indices of the top-level nodes whose results depend on ``value``; with
    ``through_shape=False``, only on its values (a ``Shape`` node and what is computed from
    its result alone do not count: they depend on the batch size, not on the data)."""
    tainted, nodes = {value}, set()
    for index, node in enumerate(model.graph.node):
        if tainted.intersection(node_inputs(node)):
            if not through_shape and node.domain in ("", "ai.onnx") and node.op_type in SHAPE_OPS:
                continue
            nodes.add(index)
            tainted.update(n for n in node.output if n)
    return nodes


def _needed(model: Any, given: set[str], outputs: Sequence[str]) -> tuple[list[int], set[str]]:
    """The nodes (indices, in order) that compute ``outputs`` when the values ``given`` are
    fed, and every value those nodes read."""
    wanted = set(outputs) - given
    keep: list[int] = []
    read: set[str] = set()
    for index in range(len(model.graph.node) - 1, -1, -1):
        node = model.graph.node[index]
        if wanted.intersection(node.output):
            keep.append(index)
            names = node_inputs(node)
            read.update(names)
            wanted.update(n for n in names if n not in given)
    keep.reverse()
    return keep, read


def frontier(model: Any, layer: str, output: str, source: str) -> tuple[list[int], list[str]]:
    """The part of the graph after ``layer``: the nodes that compute ``output`` from
    ``layer`` (indices, in order) and the per-sample values they read from before it (a
    skip connection's source, the graph input ``source``), in graph order.

    The values are the same for every edit of ``layer``'s activations, so they are computed
    once per sample and repeated. The nodes are those on a path from ``layer`` to
    ``output`` and those whose results do not depend on the data of ``source``
    (``Constant`` nodes, shape arithmetic): these run with the rest, so that shape arithmetic
    sees the edited batch's size.
    """
    after = downstream(model, layer)
    per_sample = downstream(model, source, through_shape=False)
    weights = {t.name for t in model.graph.initializer} | {t.values.name for t in model.graph.sparse_initializer}
    given = {layer}
    tail: list[int] = []
    wanted = {output}
    for index in range(len(model.graph.node) - 1, -1, -1):
        node = model.graph.node[index]
        if (index in after or index not in per_sample) and wanted.intersection(node.output):
            tail.append(index)
            wanted.update(n for n in node_inputs(node) if n not in given)
    tail.reverse()
    if not any(i in after for i in tail):
        return [], []
    produced = {n for i in tail for n in model.graph.node[i].output}
    order = {name: i for i, name in enumerate([i.name for i in model.graph.input] + node_outputs(model))}
    reads = {n for i in tail for n in node_inputs(model.graph.node[i])}
    outside = sorted(reads - produced - weights - given, key=lambda n: order.get(n, -1))
    return tail, outside


def value_types(model: Any) -> dict[str, Any]:
    """``TypeProto`` of every value whose type ONNX shape inference knows (graph inputs,
    outputs and intermediate values); empty where inference fails."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - custom ops or unusual graphs: the types stay unknown
        inferred = model
    graph = inferred.graph
    return {v.name: v.type for v in [*graph.input, *graph.value_info, *graph.output] if v.type.HasField("tensor_type")}


def inferred_shapes(model: Any, source: str, shape: Sequence[int]) -> dict[str, tuple[int, ...] | None]:
    """Every value's shape when the graph input ``source`` has the fixed ``shape``, by ONNX
    shape inference; None where a dimension stays unknown (empty when inference fails)."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for info in fixed.graph.input:
        if info.name == source:
            dims = info.type.tensor_type.shape.dim
            del dims[:]
            for size in shape:
                dims.add().dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # noqa: BLE001 - custom ops or unusual graphs: the run decides
        return {}
    found: dict[str, tuple[int, ...] | None] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        tensor = info.type.tensor_type
        known = tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim)
        found[info.name] = tuple(d.dim_value for d in tensor.shape.dim) if known else None
    return found


def _value_info(name: str, types: dict[str, Any], *, symbolic: bool) -> Any:
    """A ``ValueInfoProto`` for ``name``: its known element type, every dimension symbolic
    (a cut value fed back in may have any batch size); an untyped one when unknown."""
    import onnx

    info = onnx.ValueInfoProto(name=name)
    known = types.get(name)
    if known is None:
        if symbolic:  # a graph input must be typed; float is what image models carry
            info.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        return info
    info.type.tensor_type.elem_type = known.tensor_type.elem_type
    if symbolic and known.tensor_type.HasField("shape"):
        for axis, _ in enumerate(known.tensor_type.shape.dim):
            info.type.tensor_type.shape.dim.add().dim_param = f"{name}_dim{axis}"
    return info


def cut(model: Any, inputs: Sequence[str], outputs: Sequence[str], types: dict[str, Any], nodes: Sequence[int] | None = None) -> Any:
    """A new model that computes ``outputs`` from the values ``inputs`` (graph inputs or
    intermediate values), with only the nodes and weights it needs.

    ``nodes`` (indices) overrides which nodes are kept; by default every node on the way
    from ``inputs`` to ``outputs``. A name in ``inputs`` that the kept nodes do not read is
    dropped (ONNX Runtime would ask to be fed it anyway).
    """
    import onnx

    given = set(inputs)
    if nodes is None:
        nodes, read = _needed(model, given, outputs)
    else:
        read = {n for i in nodes for n in node_inputs(model.graph.node[i])}
    read |= set(outputs)
    graph = model.graph
    originals = {i.name: i for i in graph.input}
    new_inputs = []
    for name in inputs:
        if name not in read:
            continue
        if name in originals:
            new_inputs.append(originals[name])
        else:
            new_inputs.append(_value_info(name, types, symbolic=True))
    declared = {o.name: o for o in graph.output}
    new_outputs = [declared[n] if n in declared else _value_info(n, types, symbolic=False) for n in outputs]
    new_graph = onnx.helper.make_graph(
        [graph.node[i] for i in nodes],
        f"{graph.name or 'graph'}_cut",
        new_inputs,
        new_outputs,
        initializer=[t for t in graph.initializer if t.name in read],
        sparse_initializer=[t for t in graph.sparse_initializer if t.values.name in read],
        value_info=[v for v in graph.value_info if v.name in read and v.name not in given],
    )
    new = onnx.helper.make_model(
        new_graph,
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
        functions=list(model.functions),
    )
    return new
