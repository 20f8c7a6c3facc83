"""Progress: a bar on a terminal, a few plain lines in a log, none when quiet."""

import os
import pty
import select
import subprocess
import sys

import numpy as np
import pytest

from converters import convert_bytes
from converters import progress
from tfcompress.keras2.env import keras

N = 2000


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("progress")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(N, 16)).astype(np.float32)
    (tmp / "m.tflite").write_bytes(convert_bytes(model, x[:100], mode="int8"))
    np.savez(tmp / "d.npz", x=x)
    return str(tmp / "m.tflite"), str(tmp / "d.npz")


def _cli(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "tfcompress")
    return [exe, *args]


def _env():
    """This process's environment without a verbosity an earlier in-process
    CLI call (CliRunner) left behind: each command starts at the default."""
    return {k: v for k, v in os.environ.items()
            if k not in (progress.ENV_LEVEL, progress.ENV_FILE)}


def _in_pty(cmd, timeout=300):
    """Run ``cmd`` with stdout and stderr on an 80x24 pseudo-terminal; its
    exit status and output."""
    import fcntl
    import struct
    import termios
    import time
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True, env=_env())
    chunks, deadline = [], time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            chunks.append(os.read(master, 65536))
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(slave)
    os.close(master)
    proc.wait(timeout=30)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_terminal_gets_a_bar(model_and_data):
    model, data = model_and_data
    code, out = _in_pty(_cli("validate", model, "--data", data,
                             "--target", "micro"))
    assert code == 0, out[-2000:]
    # tqdm draws "<desc>: NN%|####| n/N [..., x sample/s]" with carriage returns
    assert "\r" in out and "sample/s" in out
    assert f"/{N}" in out or f"/{N:,}" in out
    assert "TFLM" in out and "LiteRT" in out


def test_pipe_gets_a_few_plain_lines(model_and_data):
    model, data = model_and_data
    proc = subprocess.run(_cli("validate", model, "--data", data,
                               "--target", "micro"),
                          capture_output=True, text=True, timeout=300,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "\r" not in proc.stderr
    assert any(ln.startswith(f"TFLM: {N:,} samples in") for ln in lines), lines
    assert any(ln.startswith(f"LiteRT: {N:,} samples in") for ln in lines), lines
    assert len(lines) <= 12, lines


def test_quiet_prints_no_progress(model_and_data):
    model, data = model_and_data   # LiteRT only: quiet is quiet everywhere
    proc = subprocess.run(_cli("--quiet", "validate", model, "--data", data),
                          capture_output=True, text=True, timeout=300,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "samples in" not in proc.stderr and "..." not in proc.stderr


def test_child_progress_is_relayed(tmp_path, capsys):
    # a bar inside a child (here: this process with the file set) writes
    # counts; relay() in the parent turns them into its own lines
    progress.set_verbosity(1)
    with progress.relay() as env:
        assert env and os.path.exists(env[progress.ENV_FILE])
        code = ("from converters import progress\n"
                "with progress.bar(50, 'child work', unit='item') as p:\n"
                "    [p.update() for _ in range(50)]\n")
        subprocess.run([sys.executable, "-c", code], check=True,
                       env={**os.environ, **env})
    err = capsys.readouterr().err
    assert "child work: 50 items in" in err
