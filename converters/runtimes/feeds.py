"""What goes into and comes out of a .tflite's I/O tensors.

Any valid model is fed the same way, also a third-party one: float data is
quantized with each input tensor's own scale and zero point (int8, uint8,
int16 inputs), data already in the tensor's dtype is used as is, and outputs
are dequantized with their own parameters. Inputs and outputs are named by
the model's signature (the Keras names), else by tensor name.

A model with state that carries across invocations (resource variables:
``VAR_HANDLE`` / ``READ_VARIABLE`` / ``ASSIGN_VARIABLE``) is *streaming*:
its data is a batch of sequences ``[S, T, ...]`` (one invocation per step,
state reset between sequences). Variable tensors alone (the state of a
fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``, which also persists across
invocations) make a model streaming only when its data comes as sequences
(:meth:`Feeds.streams`); given one sample per row, the state is reset
before each sample, as the Keras model starts every sample from zero.

Example:
    >>> feeds = Feeds.of(info)
    >>> xs = feeds.prepare([x])           # one array per input, tensor dtype
    >>> feeds.output_names
    ['probs']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

_NP = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16,
       "INT32": np.int32, "INT64": np.int64, "FLOAT32": np.float32,
       "FLOAT16": np.float16, "BOOL": np.bool_, "UINT16": np.uint16,
       "UINT32": np.uint32, "FLOAT64": np.float64}
_FLOATS = ("FLOAT32", "FLOAT16", "FLOAT64")
#: ops whose presence means the model keeps state between invocations
STATE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


@dataclasses.dataclass
class Port:
    """One input or output tensor of the model's main subgraph."""

    name: str
    index: int          # tensor index in subgraph 0
    dtype: str          # TFLite type name, e.g. "UINT8"
    shape: tuple        # as in the flatbuffer, batch included
    scale: float        # 0.0: not quantized
    zero_point: int

    @property
    def np_dtype(self):
        return _NP.get(self.dtype, np.float32)

    @property
    def quantized(self) -> bool:
        return self.dtype not in _FLOATS and self.scale > 0

    @property
    def sample_shape(self) -> tuple:
        return tuple(self.shape[1:])

    @property
    def lsb(self) -> float | None:
        """One step of this tensor in float units (quantized tensors)."""
        return self.scale if self.quantized else None


def _port(info, k: int, index: int, name: str) -> Port:
    t = info.tensors[index]
    return Port(name=name or t.name or f"tensor_{index}", index=index,
                dtype=t.dtype, shape=tuple(int(s) for s in t.shape),
                scale=float(t.scale[0]) if t.scale else 0.0,
                zero_point=int(t.zero_point[0]) if t.zero_point else 0)


def _signature_names(info, which: str) -> dict[int, str]:
    sigs = info.signatures or {}
    sig = sigs.get("serving_default") or (next(iter(sigs.values()))
                                          if len(sigs) == 1 else None)
    return {v: k for k, v in (sig or {}).get(which, {}).items()}


@dataclasses.dataclass
class Feeds:
    """The model's inputs and outputs, and whether it streams."""

    inputs: list[Port]
    outputs: list[Port]
    stateful: bool
    #: variable tensors (recurrent state) that persist across invocations
    recurrent_state: bool = False

    @classmethod
    def of(cls, info, *, output_names: Sequence[str] | None = None
           ) -> "Feeds":
        """From a parsed model (:func:`converters.tflite.flatbuffer.read`).

        ``output_names`` overrides the names (e.g. read before the strings
        were stripped)."""
        ins = _signature_names(info, "inputs")
        outs = _signature_names(info, "outputs")
        inputs = [_port(info, k, i, ins.get(i, ""))
                  for k, i in enumerate(info.inputs)]
        outputs = [_port(info, k, i, outs.get(i, ""))
                   for k, i in enumerate(info.outputs)]
        for k, port in enumerate(outputs):
            if output_names is not None and k < len(output_names):
                port.name = output_names[k]
            elif not port.name or port.name.startswith("tensor_"):
                port.name = f"output_{k}"
        stateful = any(op.name in STATE_OPS for op in info.operators)
        return cls(inputs, outputs, stateful,
                   any(t.is_variable for t in info.tensors))

    def streams(self, arrays: Sequence[np.ndarray]) -> bool:
        """Whether ``arrays`` (one per input) are to be fed as sequences:
        always for resource-variable state; for recurrent state only when
        the data has a sequence axis more than the input tensor."""
        if self.stateful or not self.recurrent_state or not arrays:
            return self.stateful
        return np.ndim(arrays[0]) == len(self.inputs[0].shape) + 1

    @property
    def output_names(self) -> list[str]:
        return [p.name for p in self.outputs]

    @property
    def input_names(self) -> list[str]:
        return [p.name for p in self.inputs]

    # ---------------------------------------------------------- inputs --
    def arrange(self, data) -> list[np.ndarray]:
        """One array per input, in the model's order, from an array (one
        input), a list, or a dict keyed by input name (or ``x0``, ``x1``)."""
        if isinstance(data, Mapping):
            out = []
            for k, port in enumerate(self.inputs):
                for key in (port.name, f"x{k}", "x" if k == 0 and len(
                        self.inputs) == 1 else None):
                    if key in data:
                        out.append(np.asarray(data[key]))
                        break
                else:
                    raise ValueError(
                        f"no data for input {port.name!r}; the data has "
                        f"{sorted(data)} and the model's inputs are "
                        f"{self.input_names} (or x0, x1, ...)")
            return out
        if isinstance(data, (list, tuple)):
            arrays = [np.asarray(a) for a in data]
        else:
            arrays = [np.asarray(data)]
        if len(arrays) != len(self.inputs):
            raise ValueError(f"the model has {len(self.inputs)} inputs "
                             f"{self.input_names} but {len(arrays)} array(s) "
                             f"were given")
        return arrays

    def prepare(self, data) -> list[np.ndarray]:
        """Arrays in the input tensors' dtypes, ``[N, ...]`` (streaming:
        ``[S, T, ...]``); see the module doc for the rules."""
        arrays = self.arrange(data)
        return [self._check_shape(port, quantize(a, port))
                for port, a in zip(self.inputs, arrays)]

    def _check_shape(self, port: Port, a: np.ndarray) -> np.ndarray:
        want = port.sample_shape
        lead = 2 if self.stateful else 1
        if self.stateful and a.ndim == len(want) + 1:
            a = a[None]  # one sequence of N steps
        if a.ndim < lead or int(np.prod(a.shape[lead:])) != int(
                np.prod(want)):
            form = "[S, T, " if self.stateful else "[N, "
            raise ValueError(
                f"input {port.name!r} wants samples of shape {list(want)} "
                f"but the data has shape {list(a.shape)} (expected "
                f"{form}{', '.join(map(str, want))}]"
                + (": a streaming model takes sequences of steps"
                   if self.stateful else "") + ")")
        return a.reshape(a.shape[:lead] + want)

    def dequantize(self, raw: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [dequantize(r, p) for r, p in zip(raw, self.outputs)]


def quantize(x: np.ndarray, port: Port) -> np.ndarray:
    """Data for ``port``: as is when already in its dtype, quantized with
    its scale / zero point when it is a quantized tensor, else cast."""
    x = np.asarray(x)
    want = port.np_dtype
    if x.dtype == want:
        return x
    if port.quantized:
        info = np.iinfo(want)
        q = np.round(np.asarray(x, np.float64) / port.scale) + port.zero_point
        return np.clip(q, info.min, info.max).astype(want)
    if not np.issubdtype(want, np.floating) and port.dtype not in _FLOATS \
            and np.issubdtype(x.dtype, np.floating) and \
            not np.all(x == np.round(x)):
        raise ValueError(f"input {port.name!r} is {port.dtype} without "
                         f"quantization parameters but the data holds "
                         f"non-integer values; pass integers (e.g. token "
                         f"ids)")
    return x.astype(want)


def dequantize(q: np.ndarray, port: Port) -> np.ndarray:
    """Float values of an output (its own scale / zero point)."""
    if port.quantized:
        return (np.asarray(q, np.float32) - port.zero_point) * port.scale
    return np.asarray(q, np.float32)


def flatten_steps(arrays: Sequence[np.ndarray], stateful: bool
                  ) -> list[np.ndarray]:
    """``[S, T, ...]`` -> ``[S*T, ...]`` for streaming runs (judged step by
    step), unchanged otherwise."""
    if not stateful:
        return list(arrays)
    return [a.reshape((-1,) + a.shape[2:]) for a in arrays]
