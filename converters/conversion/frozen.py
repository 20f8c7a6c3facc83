"""The frozen function an unrolled recurrent model is converted from.

An unrolled GRU/LSTM starts from a zero state, so at its first step part
of the math reads only constants, and part of it is dead: ``f * c0`` with
``c0 = 0`` (LSTM), ``r * (h0 @ R + b)`` with a zero recurrent bias (GRU). A
gate ``Split`` then has an output nobody reads. The int8 quantizer needs a
range for every output of a ``SPLIT`` (they share one scale), finds none
for the dead one, and then, depending on the run, leaves that ``SPLIT``
float (a ``DEQUANTIZE``/``QUANTIZE`` pair around it). So before the
converter sees the function:

1. the variables are folded into constants and TensorFlow's constant
   folding computes every constant subgraph (the zero-state products);
2. a product with a zero constant of its own shape becomes that constant
   (TensorFlow keeps ``x * 0`` for float ``x``; the converter folds it
   later), and what only it read is dropped;
3. each ``Split`` with a dead output becomes one ``StridedSlice`` per live
   output (int8 in LiteRT and TFLM).

The function keeps its signature: the Keras input names, the outputs keyed
by the Keras output names.
"""

from __future__ import annotations

__all__ = ["frozen_function", "fold_zero_state"]


def frozen_function(model, batch: int = 1):
    """:func:`converters.conversion.signature.serving_function`, frozen,
    folded and with its dead-output splits sliced (see the module doc).
    Convert it with an empty ``tf.Module`` as the trackable."""
    import tensorflow as tf
    from tensorflow.lite.python.util import (get_grappler_config,
                                             run_graph_optimizations)
    from tensorflow.python.eager.wrap_function import function_from_graph_def
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2_as_graph)

    from converters.conversion.signature import output_names, serving_function

    function = serving_function(model, batch)
    frozen, graph_def = convert_variables_to_constants_v2_as_graph(function)
    graph_def = run_graph_optimizations(
        graph_def, frozen.inputs, frozen.outputs,
        get_grappler_config(["constfold"]), graph=frozen.graph)
    graph_def = fold_zero_state(graph_def,
                                [t.name for t in frozen.outputs])
    folded = function_from_graph_def(
        graph_def, [t.name for t in frozen.inputs],
        [t.name for t in frozen.outputs])
    specs = function.structured_input_signature[0]
    # the frozen function returns the outputs flat, in nest order
    outs = tf.nest.flatten({name: name for name in output_names(model)})

    @tf.function
    def serve(*args):
        result = folded(*args)
        result = result if isinstance(result, (list, tuple)) else [result]
        return {name: value for name, value in zip(outs, result)}

    return serve.get_concrete_function(*specs)


def _ref(text: str):
    """``(node, output index)`` of an input reference ``name[:i]``."""
    name, _, index = text.partition(":")
    return name, int(index or 0)


def fold_zero_state(graph_def, outputs):
    """A copy of ``graph_def`` (outputs ``outputs``, tensor names) with
    zero products folded, dead nodes dropped and each ``Split`` (constant
    axis, static shape) with an output nobody reads made one
    ``StridedSlice`` per read output."""
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")

    def shape(text):
        name, index = _ref(text)
        return graph.get_operation_by_name(name).outputs[index].shape

    nodes = {n.name: n for n in graph_def.node}

    def value(text):
        node = nodes.get(_ref(text)[0])
        if node is None or node.op != "Const":
            return None
        return tensor_util.MakeNdarray(node.attr["value"].tensor)

    replaced = {}
    for node in graph_def.node:
        if node.op != "Mul":
            continue
        out = shape(node.name)
        for text in node.input:
            zero = value(text)
            if zero is not None and not zero.any() and out.is_fully_defined() \
                    and tuple(zero.shape) == tuple(out.as_list()):
                const = tf.compat.v1.NodeDef(name=node.name, op="Const")
                const.attr["dtype"].type = node.attr["T"].type
                const.attr["value"].tensor.CopyFrom(
                    tf.make_tensor_proto(zero))
                replaced[node.name] = const
                break
    nodes.update(replaced)
    live, stack = set(), [_ref(t)[0] for t in outputs]
    while stack:
        name = stack.pop()
        if name in live:
            continue
        live.add(name)
        stack.extend(_ref(t.lstrip("^"))[0] for t in nodes[name].input)
    read, controlled = {}, set()
    for name in live:
        for text in nodes[name].input:
            if text.startswith("^"):
                controlled.add(text[1:])
            else:
                source, index = _ref(text)
                read.setdefault(source, set()).add(index)
    plans = {}
    for name in live:
        node = nodes[name]
        if node.op != "Split" or name in controlled:
            continue
        axis, dims = value(node.input[0]), shape(node.input[1])
        parts = node.attr["num_split"].i
        if len(read.get(name, ())) == parts or axis is None or \
                not dims.is_fully_defined():
            continue
        plans[name] = (node, int(axis) % len(dims), dims.as_list(), parts,
                       sorted(read.get(name, ())))
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name not in live:
            continue
        if node.name in plans:
            out.node.extend(_slices(*plans[node.name]))
            continue
        copy = out.node.add()
        copy.CopyFrom(nodes[node.name])
        for k, text in enumerate(copy.input):
            name, index = _ref(text.lstrip("^"))
            if name in plans and not text.startswith("^"):
                copy.input[k] = f"{name}/part{index}"
    return out


def _slices(node, axis: int, shape: list, parts: int, live: list) -> list:
    """The ``StridedSlice`` (and its begin/end/strides constants) of each
    live output of the ``Split`` ``node``."""
    import numpy as np
    import tensorflow as tf

    size = shape[axis] // parts
    full = (1 << len(shape)) - 1 - (1 << axis)   # every axis but ``axis``
    made = []
    for index in live:
        name = f"{node.name}/part{index}"
        bounds = {}
        for key, at in (("begin", index * size), ("end", (index + 1) * size),
                        ("strides", 1)):
            value = np.zeros(len(shape), np.int32) if key != "strides" else \
                np.ones(len(shape), np.int32)
            value[axis] = at
            const = tf.compat.v1.NodeDef(name=f"{name}/{key}", op="Const")
            const.attr["dtype"].type = tf.int32.as_datatype_enum
            const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            made.append(const)
            bounds[key] = const.name
        sliced = tf.compat.v1.NodeDef(
            name=name, op="StridedSlice",
            input=[node.input[1], bounds["begin"], bounds["end"],
                   bounds["strides"]])
        sliced.attr["T"].CopyFrom(node.attr["T"])
        sliced.attr["Index"].type = tf.int32.as_datatype_enum
        for mask in ("begin_mask", "end_mask"):
            sliced.attr[mask].i = full
        for mask in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask"):
            sliced.attr[mask].i = 0
        if node.device:
            sliced.device = node.device
        made.append(sliced)
    return made
