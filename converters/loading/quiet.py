"""Import TensorFlow without its start-up log noise on the terminal.

TensorFlow's native libraries log before ``absl::InitializeLog()`` runs, so
``TF_CPP_MIN_LOG_LEVEL`` does not silence them: "All log messages before
absl::InitializeLog() ...", the oneDNN notice, "Could not find cuda drivers",
"failed call to cuInit" on a machine without a GPU. :func:`import_tensorflow`
imports TensorFlow (and runs one op, which is when CUDA is probed) with the
process's stderr file descriptor captured, drops those known lines and
passes every other line through, so real errors still reach the user.

Example:
    >>> from converters.loading.quiet import import_tensorflow
    >>> tf = import_tensorflow()
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

__all__ = ["NOISE", "captured_stderr", "import_tensorflow", "install"]

#: native start-up lines that carry nothing for a user of this tool
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+\.cc:\d+\]"
    r"|E\d{4} [\d:. ]+\d+ cuda_(platform|executor|diagnostics)\.cc:\d+\]"
    r"|.*(cuInit|cuda drivers|TF_ENABLE_ONEDNN_OPTS|rebuild TensorFlow with"
    r" the appropriate compiler flags|This TensorFlow binary is optimized)"
    r"|fully_quantize: \d+, inference_type: \d+)")

_DONE = False


@contextlib.contextmanager
def captured_stderr():
    """Capture file descriptor 2 (native and Python writes alike); on exit
    replay the lines :data:`NOISE` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
            kept = [ln for ln in text.splitlines()
                    if ln.strip() and not NOISE.match(ln)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_tensorflow():
    """``import tensorflow`` (once per process) with its start-up noise
    dropped; returns the module."""
    global _DONE
    if _DONE or os.environ.get("TFCOMPRESS_TF_LOGS"):
        import tensorflow as tf
        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with captured_stderr():
        import tensorflow as tf
        tf.constant(0.0) + 0.0   # CUDA is probed at the first op
    _DONE = True
    return tf


class _QuietFinder:
    """Meta-path finder: the first ``import tensorflow`` of the process, from
    wherever it comes, goes through :func:`import_tensorflow`'s capture."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or _DONE or \
                os.environ.get("TFCOMPRESS_TF_LOGS"):
            return None
        import importlib.util
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        real = spec.loader

        class _Loader:
            def create_module(self, spec):
                return real.create_module(spec)

            def exec_module(self, module):
                global _DONE
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                with captured_stderr():
                    real.exec_module(module)
                    module.constant(0.0) + 0.0   # CUDA is probed here
                _DONE = True

        spec.loader = _Loader()
        return spec


def install() -> None:
    """Route this process's first ``import tensorflow`` through the quiet
    import (idempotent)."""
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
