"""A declarative compression pipeline: stages run in order, each with its
own ``fit``; a later stage preserves what earlier ones made.

YAML/JSON file or Python object, one structure::

    stages:
      - prune:    {target_sparsity: 0.75, schedule: polynomial, epochs: 6}
      - cluster:  {clusters: 16, init: kmeans++, preserve_sparsity: true, epochs: 3}
      - quantize: {epochs: 3}
    fit: {batch_size: 32, optimizer: adam, learning_rate: 0.001,
          loss: sparse_categorical_crossentropy, from_logits: true,
          validation_split: 0.1}

Invalid recipes fail in :meth:`Recipe.from_dict`, before any training, with
an error naming the field (``stages[1].cluster.clusters``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any, Dict, List

# Each stage kind: {key: (type(s), default, check or None)}. ``epochs``,
# ``learning_rate`` and ``batch_size`` are common to all stages.
_NUM = (int, float)
_COMMON = {
    "epochs": (int, 2, lambda v: v >= 0),
    "learning_rate": (_NUM + (type(None),), None, lambda v: v is None or v > 0),
    "batch_size": ((int, type(None)), None, lambda v: v is None or v > 0),
    # None: the fit section's value (tfcompress.pipeline.training)
    "lr_schedule": ((str, type(None)), None,
                    lambda v: v in (None, "cosine", "constant")),
    "restore_best": ((bool, type(None)), None, None),
    "freeze_batchnorm": ((bool, type(None)), None, None),
}
STAGES: Dict[str, Dict[str, tuple]] = {
    "prune": {
        "target_sparsity": (_NUM, 0.5, lambda v: 0 <= v < 1),
        "schedule": (str, "polynomial", lambda v: v in ("polynomial", "constant")),
        "begin_step": (int, 0, lambda v: v >= 0),
        "end_step": ((int, type(None)), None, None),
        "frequency": ((int, type(None)), None, lambda v: v is None or v > 0),
        "per_layer": (dict, None, None),
        "skip": (list, None, None),
        "m_by_n": ((list, type(None)), None,
                   lambda v: v is None or (len(v) == 2 and 0 < v[0] < v[1])),
    },
    "cluster": {
        "clusters": (int, 16, lambda v: v >= 2),
        "init": (str, "kmeans++",
                 lambda v: v in ("kmeans++", "linear", "density", "random")),
        "preserve_sparsity": ((bool, type(None)), None, None),
        "per_channel": (bool, False, None),
        "skip": (list, None, None),
        # {layer: clusters} (tfcompress.analysis.mixed_precision writes it)
        "per_layer": (dict, None, None),
    },
    "quantize": {
        "preserve": ((str, list), "auto", None),
        "layers": (list, None, None),
        "skip": (list, None, None),
        # n-bit weight QAT (tfcompress.lowbit.nbit_scheme)
        "weight_bits": (int, 8, lambda v: 2 <= v <= 8),
        "keep_first_last": (bool, True, None),
    },
    # binary/ternary weights with an STE (tfcompress.lowbit.binarize)
    "binarize": {
        "mode": (str, "binary", lambda v: v in ("binary", "ternary")),
        "threshold": (_NUM, 0.7, lambda v: 0 <= v < 1),
        "keep_first_last": (bool, True, None),
        "skip": (list, None, None),
    },
    # knowledge distillation (tfcompress.distill); teacher: .keras/.h5
    # path, omitted = the model given to compress()
    "distill": {
        "teacher": ((str, type(None)), None, None),
        "temperature": (_NUM, 4.0, lambda v: v > 0),
        "alpha": (_NUM, 0.1, lambda v: 0 <= v <= 1),
    },
    # structured: a smaller dense model (tfcompress.channel_pruning); the
    # "taylor" criterion needs data, use channel_pruning.prune_channels
    "channel_prune": {
        "ratio": (_NUM, 0.5, lambda v: 0 <= v < 1),
        "criterion": (str, "l1", lambda v: v in ("l1", "l2")),
        "multiple_of": (int, 1, lambda v: v >= 1),
        "skip": (list, None, None),
    },
    # SVD factorization (tfcompress.lowrank): give energy or rank (default
    # energy 0.9)
    "low_rank": {
        "energy": (_NUM + (type(None),), None,
                   lambda v: v is None or 0 < v <= 1),
        "rank": ((int, type(None)), None, lambda v: v is None or v >= 1),
        "skip": (list, None, None),
    },
}
FIT = {
    "batch_size": (int, 32, lambda v: v > 0),
    "optimizer": (str, "adam", None),
    "learning_rate": (_NUM, 1e-3, lambda v: v > 0),
    "loss": ((str, type(None)), None, None),
    "from_logits": ((bool, type(None)), None, None),
    "metrics": ((list, type(None)), None, None),
    "validation_split": (_NUM, 0.0, lambda v: 0 <= v < 1),
    "seed": (int, 0, None),
    "verbose": (int, 1, lambda v: v in (0, 1, 2)),
    # how each stage fine-tunes (tfcompress.pipeline.training)
    "lr_schedule": (str, "cosine", lambda v: v in ("cosine", "constant")),
    "restore_best": (bool, True, None),
    "monitor": ((str, type(None)), None, None),
    "freeze_batchnorm": (bool, True, None),
    "epochs_scale": (_NUM, 1.0, lambda v: v > 0),
    # learn from the float model's outputs too: weight of the label loss
    # (1 = labels only; None = no distillation) and the temperature
    "distill_alpha": (_NUM + (type(None),), None,
                      lambda v: v is None or 0 <= v <= 1),
    "distill_temperature": (_NUM, 2.0, lambda v: v > 0),
    "min_steps": (int, 0, lambda v: v >= 0),
    # with a holdout split (no --val): every stage trains on all the data,
    # holdout included, as the float model did when DATA.npz is its training
    # data; the holdout restores the best epoch and carries the verdict
    # (tfcompress.pipeline.jobs.optimize)
    "all_data": (bool, True, None),
    # all_data false: the last stage still trains on all the data
    "final_all_data": (bool, True, None),
    "max_steps": ((int, type(None)), None, lambda v: v is None or v > 0),
}


class RecipeError(ValueError):
    """A recipe field is unknown, mistyped or out of range."""


def _check(section: dict, spec: Dict[str, tuple], where: str) -> dict:
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise RecipeError(f"{where} should be a mapping, got {section!r}")
    unknown = sorted(set(section) - set(spec))
    if unknown:
        raise RecipeError(f"{where}.{unknown[0]}: unknown field; valid "
                          f"fields: {sorted(spec)}")
    out = {}
    for key, (types, default, ok) in spec.items():
        value = section.get(key, default)
        if key in section and not (value is None and default is None):
            if isinstance(value, bool) and bool not in _as_tuple(types):
                raise RecipeError(f"{where}.{key}: expected "
                                  f"{_names(types)}, got {value!r}")
            if not isinstance(value, types):
                raise RecipeError(f"{where}.{key}: expected "
                                  f"{_names(types)}, got {value!r}")
            if ok is not None and not ok(value):
                raise RecipeError(f"{where}.{key}: value {value!r} is out of "
                                  "range")
        out[key] = copy.deepcopy(value)
    return out


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _names(types) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(types)
                       if t is not type(None))


@dataclasses.dataclass
class Stage:
    kind: str
    params: Dict[str, Any]

    @property
    def epochs(self) -> int:
        return self.params["epochs"]

    def to_dict(self) -> dict:
        return {self.kind: dict(self.params)}


@dataclasses.dataclass
class Recipe:
    """A validated pipeline. Build with :meth:`from_dict`/:meth:`load`."""

    stages: List[Stage]
    fit: Dict[str, Any]
    user_fit: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        """Validate ``data``; raise :class:`RecipeError` naming the field.

        Example:
            >>> Recipe.from_dict({"stages": [{"prune": {"epochs": 2}}]})
        """
        if isinstance(data, Recipe):
            return data
        if not isinstance(data, dict):
            raise RecipeError(f"recipe should be a mapping, got {data!r}")
        unknown = sorted(set(data) - {"stages", "fit", "name"})
        if unknown:
            raise RecipeError(f"{unknown[0]}: unknown top-level field; valid "
                              "fields: ['fit', 'name', 'stages']")
        raw = data.get("stages")
        if not isinstance(raw, list) or not raw:
            raise RecipeError("stages: expected a non-empty list of stages")
        stages = []
        for i, item in enumerate(raw):
            where = f"stages[{i}]"
            if not isinstance(item, dict) or len(item) != 1:
                raise RecipeError(f"{where}: expected one mapping such as "
                                  "{prune: {...}}, got " + repr(item))
            (kind, params), = item.items()
            if kind not in STAGES:
                raise RecipeError(f"{where}.{kind}: unknown stage; valid "
                                  f"stages: {sorted(STAGES)}")
            spec = {**STAGES[kind], **_COMMON}
            stages.append(Stage(kind, _check(params, spec, f"{where}.{kind}")))
        kinds = [s.kind for s in stages]
        if "quantize" in kinds and kinds.index("quantize") != len(kinds) - 1:
            raise RecipeError(
                f"stages[{kinds.index('quantize')}].quantize: quantization "
                "must be the last stage (later stages would undo it)")
        user_fit = dict(data.get("fit") or {})
        return cls(stages, _check(user_fit, FIT, "fit"), user_fit)

    @classmethod
    def load(cls, path: str) -> "Recipe":
        """Read a ``.yaml``/``.yml``/``.json`` recipe file, or a built-in
        recipe by name (:func:`builtin_names`)."""
        if not os.path.isfile(path) and path in builtin_names():
            path = builtin_names()[path]
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"recipe file {path!r} does not exist (built-in recipes: "
                f"{sorted(builtin_names())})")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError) as exc:
            raise RecipeError(f"{path}: not a readable UTF-8 text file "
                              f"({exc})") from None
        try:
            if path.endswith(".json"):
                data = json.loads(text)
            else:
                import yaml
                data = yaml.safe_load(text)
        except Exception as exc:
            first = str(exc).splitlines()[0]
            raise RecipeError(f"{path}: not valid YAML/JSON: {first}") from None
        try:
            return cls.from_dict(data)
        except RecipeError as exc:
            raise RecipeError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        return {"stages": [s.to_dict() for s in self.stages],
                "fit": dict(self.fit)}

    @property
    def name(self) -> str:
        kinds = [s.kind for s in self.stages]
        if kinds[-1] == "quantize":
            q = {("prune",): "PQAT", ("cluster",): "CQAT",
                 ("prune", "cluster"): "PCQAT", (): "QAT"}
            return q.get(tuple(k for k in kinds[:-1]), "+".join(kinds))
        return "+".join(kinds)


BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "recipes")


def builtin_names() -> Dict[str, str]:
    """``{name: path}`` of the recipes shipped in ``tfcompress/recipes``."""
    return {os.path.splitext(f)[0]: os.path.join(BUILTIN_DIR, f)
            for f in sorted(os.listdir(BUILTIN_DIR))
            if f.endswith((".yaml", ".yml", ".json"))}


def get(identifier) -> Recipe:
    """A recipe from a :class:`Recipe`, a dict or a file path."""
    if isinstance(identifier, Recipe):
        return identifier
    if isinstance(identifier, dict):
        return Recipe.from_dict(identifier)
    if isinstance(identifier, (str, os.PathLike)):
        return Recipe.load(os.fspath(identifier))
    raise RecipeError(f"Could not interpret recipe {identifier!r}")


