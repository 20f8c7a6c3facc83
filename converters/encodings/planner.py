"""Flash/RAM plan: which constant tensors to store encoded, and how.

An encoded tensor (LUT, PRUNE or HUFFMAN, see :mod:`~converters.encodings`)
saves flash, but DECODE writes the decoded copy into the tensor arena while
its consumer runs, so RAM may grow. :func:`plan` picks, per constant tensor,
``none`` or the encoding that stores it in the fewest bytes, to minimize
flash with the model within ``flash`` and the arena within ``ram``:

1. every encoding each tensor allows is built; the smallest wins, and its
   flash saving is measured on the whole re-serialized model (DECODE op,
   tensors and alignment included); tensors that save nothing stay plain;
2. arenas are measured in TFLM (bisection, child processes), never
   estimated: first with every saving tensor encoded; if that exceeds the
   RAM budget, tensors are added largest saving first, each kept only if the
   measured arena still fits;
3. the chosen model is proven: its TFLM outputs must equal the plain model's
   bit for bit, else :class:`~converters.encodings.decode.EncodingError`.

Without ``ram`` there is no RAM limit: every tensor that saves flash is
encoded. Encoded models also store one zero point for per-channel tensors
whose zero points are all equal (TFLM broadcasts it).

Example:
    >>> p = plan(tflite, x_int8, ram=64 * 1024)
    >>> p.flash, p.arena, p.fits, [t.encoding for t in p.tensors]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from converters.encodings import decode, huffman, lut, prune
from converters.encodings.decode import Encoded, EncodingError
from converters.targets.micro import MicroError

__all__ = ["Plan", "TensorPlan", "names_of", "plan", "prove"]

ENCODERS: dict[str, Callable] = {
    "huffman": lambda c: huffman.encode(c.array),
    "prune": lambda c: prune.encode(c.array, c.quant),
    "lut": lambda c: lut.encode(c.array, c.quant),
}


@dataclasses.dataclass
class TensorPlan:
    """One constant tensor's row of the plan."""

    index: int
    name: str
    shape: list
    dtype: str
    encoding: str            # "none", "lut", "prune" or "huffman"
    bytes_before: int        # the tensor's data in the plain model
    bytes_after: int         # stored: encoded data + ancillary (or as before)
    flash_saved: int         # measured on the whole model, this tensor alone
    decoded_ram: int         # bytes DECODE writes to the arena (0: none)
    why: str
    options: dict            # method -> stored bytes, or why it is refused
    detail: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Plan:
    """The chosen model and everything measured on the way.

    ``measured`` lists every plan whose arena was measured:
    ``{"label", "encoded" (tensor indices), "flash", "arena",
    "arena_recommended", "fits"}``; ``chosen`` is the label of the one
    shipped.
    """

    tflite: bytes
    tensors: list[TensorPlan]
    flash: int
    arena: int
    arena_recommended: int
    plain_flash: int
    plain_arena: int
    measured: list[dict]
    chosen: str
    fits: bool
    message: str
    budget: dict
    compaction_bytes: int = 0

    @property
    def encoded(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.encoding != "none"]

    def to_dict(self) -> dict:
        """JSON-ready summary (without the model bytes)."""
        out = {k: v for k, v in dataclasses.asdict(self).items()
               if k not in ("tflite", "tensors")}
        out["tensors"] = [dataclasses.asdict(t) for t in self.tensors]
        return out


def names_of(tflite) -> dict[int, str]:
    """Tensor index -> ``"<layer> weights"``/``"<layer> bias"`` for the
    constant inputs of each op (layer names come from tensor names; a
    stripped model gives ``"op #k"``). Takes bytes or a ``ModelInfo``."""
    from converters.targets import micro
    from converters.tflite import flatbuffer
    info = tflite if isinstance(tflite, flatbuffer.ModelInfo) else \
        flatbuffer.read(tflite)
    out: dict[int, str] = {}
    for op in info.operators:
        for pos, i in enumerate(op.inputs):
            if i >= 0 and info.tensors[i].is_constant and i not in out:
                kind = {1: "weights", 2: "bias"}.get(pos, f"input {pos}")
                out[i] = f"{micro.layer_of(info, op)} {kind}"
    return out


def _options(c: decode.Constant) -> tuple[dict, dict[str, Encoded]]:
    options, built = {}, {}
    for method, encoder in ENCODERS.items():
        try:
            built[method] = encoder(c)
            options[method] = built[method].stored_bytes
        except EncodingError as exc:
            options[method] = str(exc)
    return options, built


def _arena(tflite: bytes) -> tuple[int, int]:
    from converters.runtimes import tflm_arena
    lo = tflm_arena.find_arena(tflite)
    return lo, lo + tflm_arena.arena_margin(lo)


def _random_inputs(tflite: bytes, n: int = 16) -> list[np.ndarray]:
    from converters.tflite import flatbuffer
    rng = np.random.default_rng(0)
    xs = []
    for t in flatbuffer.read(tflite).input_details:
        dtype = np.dtype(t.dtype.lower())
        lim = np.iinfo(dtype) if dtype.kind in "iu" else None
        shape = [n] + [int(s) for s in t.shape[1:]]
        xs.append(rng.integers(lim.min, lim.max + 1, shape).astype(dtype)
                  if lim else rng.standard_normal(shape).astype(dtype))
    return xs


def prove(plain: bytes, encoded: bytes, inputs, *,
          plain_arena: int | None = None, arena: int | None = None) -> int:
    """Raise unless TFLM gives ``encoded`` the same outputs as ``plain``,
    bit for bit, on every sample of ``inputs``. Returns the sample count.

    Arenas default to 16 MiB (any arena that suffices gives the same
    outputs); pass measured sizes to save memory."""
    from converters.runtimes import tflm
    big = 16 * 1024 * 1024
    want = tflm.run(plain, inputs, arena_size=plain_arena or big)
    try:
        got = tflm.run(encoded, inputs, arena_size=arena or big)
    except MicroError as exc:
        raise EncodingError(f"TFLM refuses the encoded model: {exc}") \
            from None
    for k, (a, b) in enumerate(zip(want, got)):
        if a.shape != b.shape or not np.array_equal(a, b):
            bad = int(np.sum(np.any(a.reshape(len(a), -1) !=
                                    b.reshape(len(b), -1), axis=1)))
            raise EncodingError(
                f"the encoded model changes output {k} in TFLM on {bad} of "
                f"{len(a)} samples")
    return int(len(want[0]))


def _fits(flash: int, arena_rec: int, budget: dict) -> bool:
    ram, fl = budget.get("ram"), budget.get("flash")
    return ((ram is None or arena_rec + budget["ram_reserved"] <= ram) and
            (fl is None or flash + budget["flash_reserved"] <= fl))


def _ram_ok(m: dict, budget: dict) -> bool:
    return budget["ram"] is None or \
        m["arena_recommended"] + budget["ram_reserved"] <= budget["ram"]


def plan(tflite: bytes, inputs=None, *, ram: int | None = None,
         flash: int | None = None, ram_reserved: int = 0,
         flash_reserved: int = 0, names: Mapping[int, str] | None = None,
         methods: Sequence[str] = tuple(ENCODERS),
         plain_arena: int | None = None) -> Plan:
    """Choose, build, measure and prove the encodings of a TFLM model.

    Args:
        tflite: the plain full-integer model.
        inputs: samples for the proof (model input dtype, ``[N, ...]``; a
            list for several inputs); default 16 seeded random samples.
        ram: RAM bytes for the arena (``None``: no limit).
        flash: flash bytes for the model (``None``: no limit).
        ram_reserved: RAM the rest of the firmware needs.
        flash_reserved: flash the rest of the firmware needs.
        names: tensor index -> name for the report (names are usually
            stripped from a micro model by now).
        methods: encodings allowed (subset of ``huffman``, ``prune``, ``lut``).
        plain_arena: the plain model's measured minimum arena, when known.

    Raises:
        EncodingError: an encoded model TFLM refuses, or one whose outputs
            differ from the plain model's.
    """
    tflite = bytes(tflite)
    unknown = set(methods) - set(ENCODERS)
    if unknown:
        raise ValueError(f"unknown encodings {sorted(unknown)}; valid: "
                         f"{sorted(ENCODERS)}")
    budget = {"ram": ram, "flash": flash, "ram_reserved": int(ram_reserved),
              "flash_reserved": int(flash_reserved)}
    names = dict(names or names_of(tflite))
    shared = decode.apply(tflite, {})
    rows, built = _candidates(tflite, len(shared), names, methods)
    if plain_arena is None:
        plain_arena, plain_rec = _arena(tflite)
    else:
        from converters.runtimes.tflm_arena import arena_margin
        plain_rec = int(plain_arena) + arena_margin(int(plain_arena))
    measured = [{"label": "plain", "encoded": [], "flash": len(tflite),
                 "arena": plain_arena, "arena_recommended": plain_rec,
                 "fits": _fits(len(tflite), plain_rec, budget)}]

    def measure(label: str, chosen: list[int]) -> dict:
        model = decode.apply(tflite, {i: built[i] for i in chosen})
        try:
            lo, rec = _arena(model)
        except MicroError as exc:
            raise EncodingError(f"TFLM refuses the model with {label}: "
                                f"{exc}") from None
        row = {"label": label, "encoded": sorted(chosen), "flash": len(model),
               "arena": lo, "arena_recommended": rec,
               "fits": _fits(len(model), rec, budget), "model": model}
        measured.append(row)
        return row

    saving = sorted((r for r in rows if r.flash_saved > 0),
                    key=lambda r: -r.flash_saved)
    best = measured[0]
    if saving and _ram_ok(best, budget):   # else: encodings only add arena
        every = measure("all encoded", [r.index for r in saving])
        best = every if _ram_ok(every, budget) else \
            _greedy(saving, measure, budget, best)
    _explain(rows, saving, best, budget)
    model = best.get("model", tflite)
    if best["encoded"]:
        prove(tflite, model, inputs if inputs is not None
              else _random_inputs(tflite), plain_arena=plain_rec,
              arena=best["arena_recommended"])
    for r in rows:
        if r.index not in best["encoded"]:
            r.encoding, r.bytes_after, r.decoded_ram = "none", r.bytes_before, 0
    fits = _fits(len(model), best["arena_recommended"], budget)
    for m in measured:
        m.pop("model", None)
    return Plan(tflite=model, tensors=rows, flash=len(model),
                arena=best["arena"], arena_recommended=best["arena_recommended"],
                plain_flash=len(tflite), plain_arena=plain_arena,
                measured=measured, chosen=best["label"], fits=fits,
                message=_message(best, measured, budget, fits),
                budget=budget, compaction_bytes=len(tflite) - len(shared))


def _candidates(tflite: bytes, base: int, names: dict, methods):
    rows, built = [], {}
    for c in decode.constants(tflite):
        name = names.get(c.index, f"tensor {c.index}")
        row = TensorPlan(c.index, name, list(c.shape), c.dtype, "none",
                         c.nbytes, c.nbytes, 0, 0, "", {})
        rows.append(row)
        if c.refusal:
            row.why = c.refusal
            continue
        options, encs = _options(c)
        row.options = {m: options[m] for m in methods}
        encs = {m: e for m, e in encs.items() if m in methods}
        if not encs:
            row.why = "no encoding applies: " + "; ".join(
                str(v) for v in row.options.values())
            continue
        method = min(encs, key=lambda m: encs[m].stored_bytes)
        enc = encs[method]
        saved = base - len(decode.apply(tflite, {c.index: enc}))
        row.encoding, row.bytes_after = method, enc.stored_bytes
        row.flash_saved, row.decoded_ram = saved, c.nbytes
        row.detail = enc.detail
        built[c.index] = enc
        if saved <= 0:
            row.why = (f"{method} would store {enc.stored_bytes} B but the "
                       f"model grows by {-saved} B (DECODE op, tensors, "
                       f"alignment)")
    return rows, built


def _greedy(saving: list[TensorPlan], measure, budget: dict,
            plain: dict) -> dict:
    """Largest flash saving first; keep a tensor if the measured arena of
    the plan with it still fits the RAM budget (and the model shrinks)."""
    best, chosen = plain, []
    for r in saving:
        trial = measure(f"+ {r.name}", chosen + [r.index])
        r.detail["arena_with"] = trial["arena_recommended"]
        if _ram_ok(trial, budget) and trial["flash"] < best["flash"]:
            best, chosen = trial, chosen + [r.index]
    return best


def _explain(rows, saving, best, budget) -> None:
    ram = budget["ram"]
    for r in saving:
        arena = r.detail.get("arena_with")
        if r.index in best["encoded"]:
            r.why = (f"smallest of {_listing(r.options)}; saves "
                     f"{r.flash_saved} B flash")
            if arena is not None:
                r.why += f"; arena with it {arena} B <= {ram} B"
        elif arena is not None:
            r.why = (f"{r.encoding} would save {r.flash_saved} B flash but "
                     f"the measured arena with it ({arena} B) exceeds the "
                     f"{ram - budget['ram_reserved']} B RAM budget")
        else:
            r.why = (f"{r.encoding} would save {r.flash_saved} B flash; no "
                     f"plan with encodings fits the budget")


def _listing(options: dict) -> str:
    sizes = sorted((v, m) for m, v in options.items() if isinstance(v, int))
    return ", ".join(f"{m} {v} B" for v, m in sizes)


def _message(best: dict, measured: list[dict], budget: dict,
             fits: bool) -> str:
    ram, fl = budget["ram"], budget["flash"]
    rr, fr = budget["ram_reserved"], budget["flash_reserved"]
    if fits:
        return (f"plan '{best['label']}': {best['flash']} B flash, "
                f"{best['arena_recommended']} B arena"
                + ("" if ram is None and fl is None else ", within budget"))
    ram_need = min(m["arena_recommended"] for m in measured) + rr
    if ram is not None and ram_need > ram:
        return (f"nothing fits: even the plain model's arena "
                f"({ram_need - rr} B + {rr} B reserved) is {ram_need - ram} B "
                f"over the {ram} B RAM budget, and encodings only add arena; "
                f"a device with >= {ram_need} B RAM would fit it")
    smallest = min(measured, key=lambda m: m["flash"])
    within = [m for m in measured if ram is None or
              m["arena_recommended"] + rr <= ram]
    low = min(within, key=lambda m: m["flash"])
    line = (f"nothing fits: the smallest model within the RAM budget "
            f"('{low['label']}', {low['flash']} B) is "
            f"{low['flash'] + fr - fl} B over the {fl} B flash budget")
    if smallest is not low:
        line += (f"; '{smallest['label']}' needs {smallest['flash']} B flash"
                 f" and {smallest['arena_recommended'] + rr} B RAM")
    return line + f"; a flash budget of >= {low['flash'] + fr} B would fit"
