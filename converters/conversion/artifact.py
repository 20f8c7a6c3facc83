"""A converted model and everything known about it: check, validate, save.

Example:
    >>> art = convert(model, representative_data=x[:200], target="micro")
    >>> report = art.validate(x_test, y_test)
    >>> art.save("build/digits")   # model.tflite, report.json, model_data.cc/.h
"""

from __future__ import annotations

import gzip
import os
import time
from typing import List, Optional

import numpy as np

from converters.tflite import flatbuffer
from converters.conversion.modes import TARGETS, convert_bytes
from converters.errors import ConversionError, ValidationError


class Artifact:
    """The .tflite bytes of one conversion, with its report."""

    def __init__(self, tflite: bytes, *, target: str = "android",
                 mode: str = "int8", keras_model=None, name: str = "model"):
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; valid: "
                             f"{list(TARGETS)}")
        self.tflite = bytes(tflite)
        self.target = target
        self.mode = mode
        self.keras_model = keras_model
        self.name = name
        self.info = flatbuffer.read(self.tflite)
        self.report: dict = {"name": name, "target": target, "mode": mode,
                             "tflite": self._describe(), "validation": {}}
        self.extra_files: dict = {}
        self._plain_tflite: bytes | None = None
        self.device = None  # micro: a budgets profile name or {ram, flash}
        self.io = "int8"  # int8 mode: the I/O type (android: uint8, float32)
        #: conversion contract: int8 models have ``io`` I/O (a user's own
        #: .tflite may have uint8 / int16 / float I/O: set False)
        self.int8_io = True
        self.c_name = "model"  # micro: C++ namespace and file prefix
        self.shipped = None  # micro: the one model the C source carries

    # -- checks ----------------------------------------------------------
    def _describe(self) -> dict:
        info = self.info
        return {
            "bytes": len(self.tflite),
            "gzip_bytes": gzip_bytes(self.tflite),
            "weight_bytes": info.weight_bytes,
            "ops": sorted(set(info.op_names)),
            "op_counts": info.op_counts(),
            "input": _io(info.input_details[0]) if info.inputs else {},
            "output": _io(info.output_details[0]) if info.outputs else {},
            "signatures": info.signatures,
            "layers": flatbuffer.weight_stats(info),
        }

    def check(self) -> None:
        """Enforce the target's contract on the flatbuffer (an error, not a
        warning): int8 models compute only on integer tensors; micro models
        use only ops TFLM has."""
        if self.mode == "int8":
            bad = flatbuffer.float_ops(self.info)
            io = [t for t in self.info.input_details + self.info.output_details
                  if t.dtype != self.io.upper() and not (
                      (self.target == "android" or
                       t in self.info.input_details) and t.dtype in _INDEX)
                  ] if self.int8_io else []
            if bad:
                raise ConversionError(
                    f"{self.name}: int8 model computes on float tensors in "
                    f"{len(bad)} op(s), first {bad[0]}; the layer has no int8 "
                    "kernel: replace it, or use --mode float16 for GPU")
            if io:
                raise ConversionError(
                    f"{self.name}: int8 model has {io[0].dtype} I/O tensor "
                    f"{io[0].name!r}; convert with {self.io} input and "
                    "output")
        if self.target == "micro":
            from converters.targets import micro
            micro.check_compatible(self.info, require_int8=self._int8_only)

    @property
    def _int8_only(self) -> bool:
        """micro: refuse float compute, except in a user's float32 file
        (TFLM has float kernels; what we convert for micro is int8)."""
        return self.int8_io or self.mode != "float32"

    def replace_tflite(self, tflite: bytes) -> None:
        """Swap in the same model with other metadata (e.g. TFLite Metadata
        and packed files): the report's ``tflite`` entry is re-read, the
        validation results stay (the computation must be unchanged)."""
        info = flatbuffer.read(tflite)
        if info.op_names != self.info.op_names or \
                len(info.tensors) != len(self.info.tensors):
            raise ValueError(f"{self.name}: replace_tflite needs the same "
                             "model graph; validate the new bytes instead")
        self.tflite, self.info = bytes(tflite), info
        self.report["tflite"] = self._describe()

    def strip_strings(self) -> None:
        """Ship the model without names, signatures and metadata (flash on a
        microcontroller). Call after :meth:`check`, whose errors name layers;
        the report keeps the names read before stripping."""
        named = len(self.tflite)
        self.tflite = flatbuffer.strip_strings(self.tflite)
        self.report["tflite"].update(
            bytes=len(self.tflite),
            gzip_bytes=gzip_bytes(self.tflite),
            bytes_with_names=named)

    # -- validation -------------------------------------------------------
    def validate(self, x, y=None, *, require: bool = True, reference=None,
                 tasks=None, tolerances=None,
                 min_accuracy: Optional[float] = None, specs=None) -> dict:
        """Run in LiteRT (and TFLM for micro); judge each output by its task
        (:mod:`converters.runtimes.validation`).

        Args:
            x: inputs (one array, a list, or a dict by input name).
            y: labels or targets (one array, or ``{output name: y}``).
            require: raise :class:`ValidationError` (after the report is
                filled in) when a check fails.
            reference: the float model; default: the model converted.
            tasks: ``--task``: a task for every output or ``{name: task}``.
            tolerances: ``--tolerance``: a value or ``{name: value}``.
            min_accuracy: classifiers without a float reference.
            specs: :class:`converters.verdicts.OutputSpec` per output of
                the float model (its loss and activations), when
                ``reference`` is given as outputs.

        Returns:
            The report.
        """
        from converters.runtimes import validation
        from converters.verdicts import hints
        if self._plain_tflite is not None:  # again: plan from the plain model
            self.tflite, self._plain_tflite = self._plain_tflite, None
            self.info = flatbuffer.read(self.tflite)
        self.check()
        reference = self.keras_model if reference is None else reference
        if specs is None and getattr(reference, "outputs", None) is not None:
            specs = hints.specs_from_keras(reference)
        result = validation.validate(
            self.tflite, x, y, info=self.info, target=self.target,
            reference=reference, keras_specs=specs, tasks=tasks,
            tolerances=tolerances, min_accuracy=min_accuracy,
            require_int8=self._int8_only)
        self.report["validation"].update(result.report)
        if result.keras:
            self.report["keras"] = result.keras
        failures = list(result.failures)
        if self.target == "micro":
            failures += self._plan_encodings(result)
            failures += self._ship_micro(result)
            self._fit_budgets()
        self.report["validation"]["passed"] = not failures
        self.report["validation"]["failures"] = failures
        if failures and require:
            raise ValidationError(f"{self.name}: " + "; ".join(failures))
        return self.report

    def _plan_encodings(self, ref) -> List[str]:
        """Choose the one model the micro artifact ships: the plain int8
        model, or one with constant tensors stored encoded (LUT, PRUNE,
        HUFFMAN) where the flash/RAM plan for ``self.device`` says it pays
        (no device: the smallest flash). An encoded model is proven
        bit-identical to the plain one in TFLM, validated against LiteRT
        like it, and replaces ``self.tflite``; the report describes it."""
        from converters.encodings import planner
        from converters.runtimes import validation
        from converters.targets import budgets
        ram = flash = None
        if isinstance(self.device, dict):
            ram, flash = self.device.get("ram"), self.device.get("flash")
        elif self.device is not None:
            profile = budgets.get(self.device)
            ram, flash = profile.ram, profile.flash
        plain = self.report["validation"]["micro"]
        plan = planner.plan(self.tflite, ref.raw_inputs, ram=ram, flash=flash,
                            names=planner.names_of(self.info),
                            plain_arena=plain["arena_bytes"])
        self.report["encodings"] = plan.to_dict()
        if not plan.encoded:
            return []
        # the encoded model inherits the plain model's verdicts only with
        # its TFLM outputs, bit for bit, on the validation inputs
        check = validation.same_in_tflm(plan.tflite, ref)
        if not check["identical"]:   # never ship it: the plain int8 model
            # (validated above) ships instead, and says why
            enc = self.report["encodings"]
            enc.update(encoded=False, rejected_tensors=enc.get("tensors", []),
                       tensors=[], chosen="plain", message=(
                           "The encoded model was rejected: its TFLM outputs "
                           "differ from the plain int8 model's (samples per "
                           f"output {check['differing']} of "
                           f"{check['samples']}); the plain int8 model "
                           "ships"))
            return []
        check["plain"] = {"bytes": len(self.tflite), **{
            k: plain[k] for k in ("arena_bytes", "arena_recommended",
                                  "agreement", "max_abs_lsb") if k in plain}}
        self.report["validation"]["micro"] = {**plain, **check}
        self.report["tflite"].update(bytes=len(plan.tflite),
                                     gzip_bytes=gzip_bytes(plan.tflite),
                                     bytes_plain=len(self.tflite))
        self._plain_tflite, self.tflite = self.tflite, plan.tflite
        self.info = flatbuffer.read(self.tflite)
        return []

    def _ship_micro(self, ref) -> List[str]:
        """Measure and check :attr:`tflite`, the one model the micro
        artifact ships (plain, or encoded where the plan chose so): the C
        array, resolver, arena, budget verdict and ``report["micro"]`` all
        derive from exactly these bytes (:mod:`converters.targets.
        micro_ship`). Returns the failures: a TFLM C++ build whose outputs
        differ from the Python TFLM interpreter's."""
        from converters.targets import micro_ship
        methods = sorted({t["encoding"] for t in self.report.get(
            "encodings", {}).get("tensors", []) if t["encoding"] != "none"})
        inputs = ref.raw_inputs
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        self.shipped = micro_ship.ship(
            self.tflite, encoding="+".join(methods) or "none",
            file="model.tflite", inputs=inputs,
            python_minimum=self.report["validation"]["micro"]["arena_bytes"])
        self.report["micro"] = self.shipped.to_report()
        return [] if self.shipped.passed else [
            f"the TFLM C++ build's outputs differ from the Python TFLM "
            f"interpreter's: {self.shipped.cpp_check}"]

    def _fit_budgets(self) -> None:
        """The shipped model's array bytes (flash) and 32-bit arena (RAM)
        against every device profile, and against ``self.device`` (a
        profile name or ``{"ram": .., "flash": ..}``) as ``budget``."""
        from converters.targets import budgets
        self.report["budgets"] = {name: self.shipped.fit(name)
                                  for name in sorted(budgets.PROFILES)}
        if self.device is not None:
            device = self.device
            kwargs = dict(device) if isinstance(device, dict) else {}
            profile = None if isinstance(device, dict) else device
            self.report["budget"] = self.shipped.fit(profile, **kwargs)

    @property
    def plain_tflite(self) -> bytes:
        """The model LiteRT can run: for a micro artifact whose weights
        ship encoded, the plain int8 model they were proven against (LiteRT
        has no DECODE op); else :attr:`tflite` itself."""
        return self._plain_tflite or self.tflite

    @property
    def passed(self) -> bool:
        return bool(self.report["validation"].get("passed"))

    # -- output -----------------------------------------------------------
    def save(self, out_dir: str, *, staged: bool = True,
             shipping: bool = True) -> List[str]:
        """Write ``model.tflite``, ``report.json`` (``timings.json`` beside
        it) and, for micro, the C source of the shipped model
        (``<c_name>_data.cc``/``.h``, ``main.cc``, ``BUILD.md``).

        With ``staged`` (the default) the whole set is written into a
        staging folder and replaces ``out_dir`` in one atomic step
        (:func:`converters.files.staged_dir`): a run killed at any moment
        leaves the previous set or the new one. ``staged=False`` writes
        into ``out_dir`` as it is (a staging folder the caller manages).

        With ``shipping=False`` (a model that failed a check) the model is
        written as ``model.rejected.tflite`` beside the report, no C source
        is written, and shipping-named files a previous run left in
        ``out_dir`` are removed, so nothing under a shipping name is stale.
        """
        if staged:
            from converters.files import staged_dir
            with staged_dir(out_dir) as stage:
                written = self.save(stage, staged=False, shipping=shipping)
            return [os.path.join(out_dir, os.path.relpath(p, stage))
                    for p in written]
        from converters.files import atomic_write
        if self.target == "micro" and self.shipped is None:
            raise ValidationError(
                f"{self.name}: validate() the micro artifact before save(); "
                "the C header needs the measured arena size")
        os.makedirs(out_dir, exist_ok=True)
        if not shipping:
            return self._save_rejected(out_dir)
        paths = [atomic_write(os.path.join(out_dir, "model.tflite"),
                              self.tflite)]
        for name, data in self.extra_files.items():
            paths.append(atomic_write(os.path.join(out_dir, name), data))
        if self.target == "micro":
            from converters.targets import micro_emit, micro_example
            shipped = self.shipped
            info = flatbuffer.read(shipped.tflite)
            paths += micro_emit.write_sources(
                shipped.tflite, out_dir, arena=shipped.arena, info=info,
                name=self.c_name, shipped=shipped.description)
            paths += micro_example.write_example(
                out_dir, name=self.c_name, arena=shipped.arena,
                data_bytes=shipped.bytes, shipped=shipped.description,
                info=info)
        from converters.reporting import report as reports
        images = reports.write(self.report, out_dir)
        paths += [os.path.join(out_dir, n) for n in
                  ("report.json", "report.md", "report.html", "timings.json",
                   *images.values())]
        return paths

    def _save_rejected(self, out_dir: str) -> List[str]:
        from converters.files import atomic_write
        for stale in ("model.tflite", "model_data.cc", "model_data.h",
                      *self.extra_files):
            if os.path.exists(os.path.join(out_dir, stale)):
                os.remove(os.path.join(out_dir, stale))
        paths = [atomic_write(os.path.join(out_dir, "model.rejected.tflite"),
                              self.tflite)]
        for name, data in self.extra_files.items():   # e.g. the PTQ baseline
            paths.append(atomic_write(os.path.join(out_dir, name), data))
        from converters.reporting import report as reports
        images = reports.write(self.report, out_dir)
        return paths + [os.path.join(out_dir, n) for n in
                        ("report.json", "report.md", "report.html",
                         "timings.json", *images.values())]


#: integer input dtypes that carry indices (token ids), not quantized floats
_INDEX = ("INT32", "INT64")


def gzip_bytes(data: bytes) -> int:
    """gzip size (no timestamp, so reproducible): ``tflite.gzip_bytes``."""
    return len(gzip.compress(bytes(data), mtime=0))


def _io(t: flatbuffer.Tensor) -> dict:
    return {"name": t.name, "dtype": t.dtype.lower(), "shape": t.shape,
            "scale": t.scale[0] if t.scale else None,
            "zero_point": t.zero_point[0] if t.zero_point else None}


def convert(model, representative_data: Optional[np.ndarray] = None, *,
            target: str = "android", mode: str = "int8",
            name: str = "model", allow_float_fallback: bool = False,
            io: Optional[str] = None, input_range=None,
            unroll: bool = False) -> Artifact:
    """Convert a Keras model for ``target`` and check the result.

    Args:
        model: a ``tfcompress.keras`` model (plain, stripped, or QAT), or a
            SavedModel directory.
        representative_data: float model inputs for int8 calibration.
        target: ``"micro"`` (TFLM: int8 only) or ``"android"``.
        mode: ``int8``, ``float16``, ``dynamic``, ``int16x8``, ``float32``.
        io: ``int8`` mode only: ``uint8``, ``int8`` or ``float32`` I/O around
            the int8 model (default int8), see
            :mod:`converters.conversion.app_io`.
        input_range: with ``io``, the float input range the quantized input
            must span exactly (an image's normalized pixel range).
        unroll: unroll recurrent layers (GRU, Keras 3 LSTM) into per-step
            ops (:mod:`converters.conversion.recurrent`).

    Example:
        >>> art = convert(model, x_train[:200], target="micro")
    """
    if target == "micro" and mode not in ("int8", "int16x8"):
        raise ConversionError(
            f"target micro cannot use mode {mode!r}: the micro target "
            "converts to full-integer models (TFLM has no dynamic-range or "
            "float16 kernels, and its optimized kernels are integer); use "
            "--mode int8 with representative data")
    started = time.perf_counter()
    if io is not None and io != "int8" or input_range is not None:
        if mode != "int8" or target == "micro" or allow_float_fallback:
            raise ConversionError(
                f"io={io!r} needs mode int8 for target android (TFLM and "
                "float fallback keep int8 I/O)")
        from converters.conversion.app_io import convert_app_io
        from converters.conversion import recurrent
        if unroll:
            model = recurrent.unrolled(model)
        if not isinstance(model, str):  # a loop would crash calibration
            recurrent.check(model, "int8")
        data = convert_app_io(model, representative_data, io=io or "int8",
                              input_range=input_range)
    else:
        data = convert_bytes(model, representative_data, mode=mode,
                             allow_float_fallback=allow_float_fallback,
                             unroll=unroll)
    from converters.conversion.modes import SavedModelPredictor
    keras_model = SavedModelPredictor(model) if isinstance(model, str) \
        else model
    art = Artifact(data, target=target, mode=mode, keras_model=keras_model,
                   name=name)
    art.io = io or "int8"
    art.report["timings"] = {"convert_s": round(time.perf_counter() - started,
                                                3)}
    if not allow_float_fallback:
        art.check()
    if target == "micro":
        art.strip_strings()
    return art
