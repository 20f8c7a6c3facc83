"""Per-layer precision: int8, int16 activations with int8 weights (16x8),
or float, applied to a float .tflite by ai-edge-quantizer.

The TFLite converter quantizes a whole model at once (int8 or int16x8);
LiteRT's ai-edge-quantizer takes a recipe with one entry per op scope, so
one model can mix them. Here a *layer* is a weighted op (CONV_2D,
FULLY_CONNECTED, ...) with the weightless ops that follow it (pooling,
reshape, activations) up to the next weighted op: a layer at int16 keeps
its output int16 through those ops, and two int16 layers in a row share
int16 tensors (an int16 layer between int8 ones gains little: its output is
requantized to int8). The quantizer inserts the QUANTIZE ops at the
int8/int16 boundaries and DEQUANTIZE/QUANTIZE around float layers; the
model's input and output take the precision of the layer they belong to.

TFLM runs int16 layers whose ops are all in :data:`MICRO_INT16_OPS`
(checked by running models in the pinned ``tflite_micro`` wheel); float
layers are for Android (LiteRT) only.

Example:
    >>> q = Quantizer(float_tflite, x[:200])
    >>> tflite = q.apply({"conv2": "int16", "fc1": "int16"})
    >>> json.dump(q.aeq_recipe({"conv2": "int16"}), open("aeq.json", "w"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import warnings
from typing import Dict, Iterable, List, Mapping, Optional


from converters.conversion.signature import as_input
from converters.errors import ConversionError

PRECISIONS = ("int8", "int16", "float")
#: ops that carry the layer's weights and start a new layer
WEIGHTED_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV",
    "BATCH_MATMUL", "CONV_3D", "EMBEDDING_LOOKUP"})
#: ops with an int16-activation kernel in the pinned TFLM (run in tests)
MICRO_INT16_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
    "AVERAGE_POOL_2D", "RESHAPE", "ADD", "SOFTMAX", "LOGISTIC", "TANH",
    "MEAN", "QUANTIZE", "DEQUANTIZE"})
_A8 = {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE",
       "dtype": "INT"}
_A16 = {"num_bits": 16, "symmetric": True, "granularity": "TENSORWISE",
        "dtype": "INT"}
_W8 = {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE",
       "dtype": "INT"}
CALIBRATION_SAMPLES = 200


@dataclasses.dataclass
class Layer:
    """One weighted op and the weightless ops that follow it."""

    name: str
    ops: List[str]        # op names, in graph order
    scopes: List[str]     # ai-edge-quantizer op scopes (output tensor names)

    def micro_int16(self) -> Optional[str]:
        """Why TFLM cannot run this layer at int16 (None: it can)."""
        bad = sorted(set(self.ops) - MICRO_INT16_OPS)
        return (f"no int16 TFLM kernel for {', '.join(bad)}" if bad
                else None)


def _known(name: str, names: Optional[Iterable[str]]) -> str:
    """``hidden_1`` -> ``hidden`` when only the latter is a layer of the
    model (Keras 3 traces its layers under uniquified name scopes)."""
    if not names or name in names:
        return name
    base = re.sub(r"_\d+$", "", name)
    return base if base in names else name


def layers(float_tflite: bytes,
           names: Optional[Iterable[str]] = None) -> Dict[str, Layer]:
    """The layers of a float .tflite, by Keras layer name, in graph order.

    A weightless op joins the layer of the op producing its first
    non-constant input; weightless ops before any weighted op stay out
    (they keep the default int8). ``names``: the Keras model's layer
    names, to map scope names such as ``hidden_1`` back to ``hidden``.
    """
    names = set(names) if names is not None else None
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fbu
    from converters.targets.micro import layer_of
    from converters.tflite import flatbuffer
    info = flatbuffer.read(bytes(float_tflite))
    model = fbu.read_model(bytes(float_tflite))
    graph = model.subgraphs[0]
    out: Dict[str, Layer] = {}
    owner: Dict[int, str] = {}   # tensor index -> layer that produced it
    for op, fb_op in zip(info.operators, graph.operators):
        if op.name in WEIGHTED_OPS:
            base = name = _known(layer_of(info, op), names)
            k = 1
            while name in out:   # two weighted ops under one layer name
                k += 1
                name = f"{base}#{k}"
        else:
            name = next((owner[i] for i in op.inputs
                         if i >= 0 and i in owner), None)
        if name is None:
            continue
        layer = out.setdefault(name, Layer(name, [], []))
        layer.ops.append(op.name)
        layer.scopes.append(fbu.get_op_scope(fb_op, graph.tensors))
        for i in op.outputs:
            owner[i] = name
    # the model input takes the precision of the layer reading it (the
    # quantizer's INPUT pseudo-op); the OUTPUT one shares the scope of the
    # op producing it
    io_in = fbu.get_subgraph_input_output_operators(graph)[0]
    first = next((owner[o] for op in info.operators if any(
        i in graph.inputs for i in op.inputs) for o in op.outputs
        if o in owner), None)
    if first is not None:
        out[first].scopes.append(fbu.get_op_scope(io_in, graph.tensors))
    return out


def _entry(regex: str, precision: str) -> dict:
    if precision == "float":
        return {"regex": regex, "operation": "*",
                "algorithm_key": "no_quantize"}
    return {"regex": regex, "operation": "*",
            "algorithm_key": "min_max_uniform_quantize",
            "op_config": {
                "activation_tensor_config":
                    dict(_A16 if precision == "int16" else _A8),
                "weight_tensor_config": dict(_W8),
                "compute_precision": "INTEGER",
                "explicit_dequantize": False, "skip_checks": False,
                "min_weight_elements": 0}}


def aeq_recipe(precisions: Mapping[str, str],
               model_layers: Mapping[str, Layer]) -> List[dict]:
    """The ai-edge-quantizer recipe (a JSON-ready list): every op int8
    (``a8w8``), then one entry per op of each layer not at int8, its regex
    the op's exact scope (later entries win)."""
    check(precisions, model_layers)
    recipe = [_entry(".*", "int8")]
    for name, layer in model_layers.items():
        p = precisions.get(name, "int8")
        if p != "int8":
            recipe += [_entry("^" + re.escape(s) + "$", p)
                       for s in layer.scopes]
    return recipe


def check(precisions: Mapping[str, str], model_layers: Mapping[str, Layer],
          target: Optional[str] = None) -> None:
    """Refuse unknown layers or precisions, float layers for micro, and
    int16 layers TFLM has no kernel for, with one line naming the layer."""
    for name, p in precisions.items():
        if name not in model_layers:
            raise ValueError(f"precision plan names layer {name!r}, which "
                             f"the model does not have; its layers: "
                             f"{sorted(model_layers)}")
        if p not in PRECISIONS:
            raise ValueError(f"layer {name!r}: unknown precision {p!r}; "
                             f"valid: {list(PRECISIONS)}")
        if target == "micro" and p == "float":
            raise ValueError(f"layer {name!r}: float layers do not run on "
                             "the micro target (TFLM is integer-only); use "
                             "int16 or int8")
        why = model_layers[name].micro_int16()
        if target == "micro" and p == "int16" and why:
            raise ValueError(f"layer {name!r}: cannot be int16 on micro "
                             f"({why}); keep it int8")


def _signature_input(float_tflite: bytes):
    from ai_edge_litert.interpreter import Interpreter
    sigs = Interpreter(model_content=bytes(float_tflite)).get_signature_list()
    if not sigs:
        raise ConversionError("the float .tflite has no signature; convert "
                              "the Keras model again (it writes "
                              "serving_default)")
    key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
    return key, list(sigs[key]["inputs"])


class Quantizer:
    """A float .tflite, calibrated once, quantized per precision plan.

    Args:
        float_tflite: the float32 model (``convert_bytes(mode="float32")``).
        x: calibration inputs, one array (single input) or a dict by the
            signature's input names; the first :data:`CALIBRATION_SAMPLES`
            rows are used.
        names: the Keras model's layer names (see :func:`layers`).
    """

    def __init__(self, float_tflite: bytes, x,
                 samples: int = CALIBRATION_SAMPLES,
                 names: Optional[Iterable[str]] = None):
        from converters.loading import quiet
        self.float_tflite = bytes(float_tflite)
        self.layers = layers(self.float_tflite, names)
        key, names = _signature_input(self.float_tflite)
        arrays = x if isinstance(x, dict) else {names[0]: x}
        if set(arrays) != set(names):
            raise ValueError(f"calibration data has inputs {sorted(arrays)} "
                             f"but the model's signature wants {names}")
        arrays = {k: as_input(v)[:samples]
                  for k, v in arrays.items()}
        rows = min(len(a) for a in arrays.values())
        if rows == 0:
            raise ValueError("calibration needs at least one sample")
        from ai_edge_quantizer import calibrator, recipe_manager
        from ai_edge_quantizer.utils import qsv_utils
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe([_entry(".*", "int16")])
        data = {key: [{k: a[i:i + 1] for k, a in arrays.items()}
                      for i in range(rows)]}
        # min/max over all samples, as the TFLite converter calibrates (the
        # quantizer's default, a moving average over one-sample batches,
        # clips the tails: inputs beyond the typical sample's range)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calib = calibrator.Calibrator(
                self.float_tflite, qsv_update_func=qsv_utils.min_max_update)
        with quiet.captured_stderr(), warnings.catch_warnings(), \
                contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
            warnings.simplefilter("ignore")   # preserve_all_tensors notice
            calib.calibrate(data, manager)
        self._calibration = calib.get_model_qsvs()

    def aeq_recipe(self, precisions: Mapping[str, str]) -> List[dict]:
        """See :func:`aeq_recipe`."""
        return aeq_recipe(precisions, self.layers)

    def apply(self, precisions: Mapping[str, str],
              target: Optional[str] = None) -> bytes:
        """The model with each layer at its precision (default int8).

        Raises:
            ValueError: a bad plan (see :func:`check`).
            ConversionError: ai-edge-quantizer refused the recipe.
        """
        import ai_edge_quantizer
        from converters.loading import quiet
        check(precisions, self.layers, target)
        q = ai_edge_quantizer.Quantizer(self.float_tflite)
        q.load_quantization_recipe(self.aeq_recipe(precisions))
        try:
            with quiet.captured_stderr(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = q.quantize(self._calibration,
                                    enable_progress_report=False)
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ConversionError(
                f"ai-edge-quantizer refused the precision plan "
                f"{dict(precisions)}: {first}") from None
        return bytes(result.quantized_model)


def compute_dtypes(tflite: bytes,
                   names: Optional[Iterable[str]] = None) -> Dict[str, str]:
    """``{layer: dtype}`` of each weighted op's output (``INT8``,
    ``INT16``, ``FLOAT32``) in a converted model: what the plan became in
    the flatbuffer (reports and tests check it against the plan);
    ``names`` as in :func:`layers`."""
    from converters.targets.micro import layer_of
    from converters.tflite import flatbuffer
    info = flatbuffer.read(bytes(tflite))
    names = set(names) if names is not None else None
    out: Dict[str, str] = {}
    for op in info.operators:
        if op.name in WEIGHTED_OPS:
            base = name = _known(layer_of(info, op), names)
            k = 1
            while name in out:
                k += 1
                name = f"{base}#{k}"
            out[name] = info.tensors[op.outputs[0]].dtype
    return out
