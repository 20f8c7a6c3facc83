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
from converters.runtimes import litert
from converters.runtimes import metrics
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
        self.device = None  # micro: a budgets profile name or {ram, flash}

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
                  if t.dtype != "INT8" and not (
                      t in self.info.input_details and t.dtype in _INDEX)]
            if bad:
                raise ConversionError(
                    f"{self.name}: int8 model computes on float tensors in "
                    f"{len(bad)} op(s), first {bad[0]}; the layer has no int8 "
                    "kernel: replace it, or use --mode float16 for GPU")
            if io:
                raise ConversionError(
                    f"{self.name}: int8 model has {io[0].dtype} I/O tensor "
                    f"{io[0].name!r}; convert with int8 input and output")
        if self.target == "micro":
            from converters.targets import micro
            micro.check_compatible(self.info)

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
    def validate(self, x: np.ndarray, y: Optional[np.ndarray] = None, *,
                 require: bool = True) -> dict:
        """Run in LiteRT (and TFLM for micro), compare with the float model.

        Returns the report; with ``require`` a failed check raises
        :class:`ValidationError` after the report is filled in.
        """
        self.check()
        started = time.perf_counter()
        run = litert.run(self.tflite, x)
        reference = None
        if self.keras_model is not None:
            reference = np.asarray(self.keras_model.predict(
                np.asarray(x, np.float32), verbose=0, batch_size=256))
            self.report["keras"] = metrics.compare(reference, None, y)
        lite = metrics.compare(run.outputs, reference, y)
        lite["seconds"] = round(time.perf_counter() - started, 3)
        lite["passed"] = metrics.passed(lite)
        self.report["validation"]["litert"] = lite
        failures = [] if lite["passed"] else [
            f"LiteRT agreement {lite['agreement']:.3f} < "
            f"{metrics.MIN_AGREEMENT}"]
        if self.target == "micro":
            from converters.runtimes import tflm
            # Compare with LiteRT's kernels that round as TFLM does (XNNPACK
            # may differ by an LSB or more; its difference is reported).
            ref = litert.run(self.tflite, x, reference_kernels=True)
            micro_report = tflm.validate(self.tflite, ref.raw_inputs,
                                          ref.raw_outputs)
            micro_report["xnnpack_max_abs_lsb"] = int(np.max(np.abs(
                ref.raw_outputs.astype(np.int32)
                - run.raw_outputs.astype(np.int32)))) if len(x) else 0
            self.report["validation"]["micro"] = micro_report
            if not micro_report["passed"]:
                failures.append("TFLM output differs from LiteRT: "
                                f"{micro_report.get('reason', micro_report)}")
            failures += self._validate_lut(ref)
            self._fit_budgets()
        self.report["validation"]["passed"] = not failures
        if failures and require:
            raise ValidationError(f"{self.name}: " + "; ".join(failures))
        return self.report

    def _validate_lut(self, ref) -> List[str]:
        """LUT-compress clustered weights (TFLM ``DECODE``), validate the
        compressed model in TFLM against the same reference, keep it as
        ``model_lut.tflite``."""
        from converters.encodings import lut
        from converters.targets import micro
        from converters.runtimes import tflm
        # verify=False: the TFLM run below validates the compressed model
        # and bisects its arena; the uncompressed arena is already known.
        small, stats = lut.compress_clustered(self.tflite, verify=False)
        keep = ("bytes_before", "bytes_after", "saved_bytes",
                "weight_bytes_before", "weight_bytes_after",
                "tensors_compressed", "bits", "reason")
        summary = {k: stats[k] for k in keep if k in stats}
        self.report["validation"]["micro_lut"] = summary
        if small is None:
            return []
        try:
            check = tflm.validate(small, ref.raw_inputs, ref.raw_outputs)
        except micro.MicroError as exc:
            raise lut.not_runnable(exc) from None
        summary.update(agreement=check["agreement"],
                       max_abs_lsb=check["max_abs_lsb"],
                       arena_before=self.report["validation"]["micro"][
                           "arena_bytes"],
                       arena_after=check["arena_bytes"],
                       arena_bytes=check["arena_bytes"],
                       passed=check["passed"])
        self.extra_files["model_lut.tflite"] = small
        return [] if check["passed"] else [
            "LUT-compressed model differs from LiteRT in TFLM"]

    def _fit_budgets(self) -> None:
        """Model flash (LUT-compressed when that validated) and recommended
        arena against every device profile, and against ``self.device``
        (a profile name or ``{"ram": .., "flash": ..}``) as ``budget``."""
        from converters.targets import budgets
        micro = self.report["validation"]["micro"]
        lut = self.report["validation"].get("micro_lut", {})
        flash = lut.get("bytes_after") if "passed" in lut else len(self.tflite)
        arena = lut.get("arena_bytes", micro["arena_recommended"]) \
            if "passed" in lut else micro["arena_recommended"]
        self.report["budgets"] = {
            name: budgets.fit(name, model_bytes=flash, arena_bytes=arena)
            for name in sorted(budgets.PROFILES)}
        if self.device is not None:
            device = self.device
            kwargs = dict(device) if isinstance(device, dict) else {}
            profile = None if isinstance(device, dict) else device
            self.report["budget"] = budgets.fit(
                profile, model_bytes=flash, arena_bytes=arena, **kwargs)

    @property
    def passed(self) -> bool:
        return bool(self.report["validation"].get("passed"))

    # -- output -----------------------------------------------------------
    def save(self, out_dir: str) -> List[str]:
        """Write ``model.tflite``, ``report.json`` and, for micro,
        ``model_data.cc``/``.h``; each file atomically."""
        from converters.files import atomic_write
        os.makedirs(out_dir, exist_ok=True)
        paths = [atomic_write(os.path.join(out_dir, "model.tflite"),
                              self.tflite)]
        for name, data in self.extra_files.items():
            paths.append(atomic_write(os.path.join(out_dir, name), data))
        if self.target == "micro":
            from converters.targets import micro_emit
            arena = self.report["validation"].get("micro", {}).get(
                "arena_recommended")
            if arena is None:
                raise ValidationError(
                    f"{self.name}: validate() the micro artifact before "
                    "save(); the C header needs the measured arena size")
            paths += micro_emit.write_sources(self.tflite, out_dir,
                                              arena_bytes=arena,
                                              info=self.info)
        from converters.reporting import report as reports
        images = reports.write(self.report, out_dir)
        paths += [os.path.join(out_dir, n) for n in
                  ("report.json", "report.md", *images.values())]
        return paths


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
            unroll: bool = False) -> Artifact:
    """Convert a Keras model for ``target`` and check the result.

    Args:
        model: a ``tfcompress.keras`` model (plain, stripped, or QAT), or a
            SavedModel directory.
        representative_data: float model inputs for int8 calibration.
        target: ``"micro"`` (TFLM: int8 only) or ``"android"``.
        mode: ``int8``, ``float16``, ``dynamic``, ``int16x8``, ``float32``.
        unroll: unroll recurrent layers (GRU, Keras 3 LSTM) into per-step
            ops (:mod:`converters.conversion.recurrent`).

    Example:
        >>> art = convert(model, x_train[:200], target="micro")
    """
    if target == "micro" and mode not in ("int8", "int16x8"):
        raise ConversionError(
            f"target micro cannot use mode {mode!r}: TFLM runs only "
            "full-integer models (no dynamic-range or float16 kernels); use "
            "--mode int8 with representative data")
    started = time.perf_counter()
    data = convert_bytes(model, representative_data, mode=mode,
                         allow_float_fallback=allow_float_fallback,
                         unroll=unroll)
    from converters.conversion.modes import SavedModelPredictor
    keras_model = SavedModelPredictor(model) if isinstance(model, str) \
        else model
    art = Artifact(data, target=target, mode=mode, keras_model=keras_model,
                   name=name)
    art.report["timings"] = {"convert_s": round(time.perf_counter() - started,
                                                3)}
    if not allow_float_fallback:
        art.check()
    if target == "micro":
        art.strip_strings()
    return art
