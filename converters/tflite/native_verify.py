"""LiteRT's own C++ flatbuffers verifier, run on a user's file first.

The interpreter LiteRT ships builds every model through
``FlatBufferModel::VerifyAndBuildFromFile``: the generated flatbuffers
``Verifier`` of the TFLite schema (every offset, vtable, vector, string and
union in bounds and aligned). :func:`verify_file` runs it in a child process
(:mod:`converters.runtimes.sandbox`: the builder is C++ that reads what it
was given) before any Python code reads the file, and turns its verdict into
one :class:`~converters.tflite.flatbuffer.InvalidModelError` line.
:mod:`converters.tflite.verify` adds the checks the schema cannot express
(indices in range, declared sizes against the bytes).

Example:
    >>> verify_file("model.tflite")            # passes silently
    >>> verify_file("mutant.tflite")
    Traceback (most recent call last):
    InvalidModelError: mutant.tflite: LiteRT's flatbuffer verifier rejects ...
"""

from __future__ import annotations

import os

from converters.tflite.flatbuffer import InvalidModelError

__all__ = ["verifier_verdict", "verify_file"]

#: what LiteRT says when its verifier rejects the bytes
_REJECTED = ("not a valid flatbuffer", "invalid flatbuffer")


def verifier_verdict(path: str) -> str | None:
    """In the child: build the model with LiteRT (which verifies first);
    the verifier's message when it rejects the file, else None. Other
    build errors (an op this LiteRT lacks) are not the verifier's and are
    left to the interpreters' own messages later."""
    from ai_edge_litert.interpreter import Interpreter
    try:
        Interpreter(model_path=path)
    except (ValueError, RuntimeError) as exc:
        text = str(exc).strip()
        if any(word in text.lower() for word in _REJECTED):
            return (text.splitlines() or [""])[0]
    return None


def verify_file(path: str | os.PathLike, *, name: str | None = None,
                timeout: float = 120.0) -> None:
    """Raise :class:`InvalidModelError` (one line naming the file) when
    LiteRT's flatbuffers verifier rejects ``path``."""
    from converters.runtimes import sandbox
    path = os.fspath(path)
    name = name or path
    with open(path, "rb") as f:  # 8 bytes: the file identifier
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise InvalidModelError(
            f"{name}: not a TFLite flatbuffer (missing 'TFL3' file "
            f"identifier, {os.path.getsize(path)} bytes); pass a .tflite file")
    verdict = sandbox.call(verifier_verdict, os.path.abspath(path), name=name,
                           what="LiteRT's flatbuffer verifier",
                           timeout=timeout,
                           preload=("ai_edge_litert.interpreter",))
    if verdict:
        raise InvalidModelError(
            f"{name}: LiteRT's flatbuffer verifier rejects the file "
            f"({verdict}); re-convert or re-download the model")
