"""Artifact sets are all-new or all-old, checked before work, reproducible.

A writer process is killed (SIGKILL) at random moments while it replaces an
older set; afterwards the folder holds exactly the old set or exactly the
new one (hashes), and the next successful run leaves no leftovers. Both ways
of switching are exercised: the atomic folder exchange and the two-rename
fallback a killed run can leave half-done (the next run restores the old
set). The slow tests do the same to the real ``convert`` and ``optimize``.
"""

import errno
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from converters import files

_WRITER = textwrap.dedent("""
    import os, sys, time
    from converters import files
    out, tag, exchange, pause = sys.argv[1], sys.argv[2], sys.argv[3], \\
        float(sys.argv[4])
    files.USE_EXCHANGE = exchange == "1"
    with files.staged_dir(out) as stage:
        for k, name in enumerate(("model.tflite", "model_data.cc",
                                  "model_data.h", "report.json",
                                  "report.md")):
            files.atomic_write(os.path.join(stage, name),
                               f"{tag} {name} ".encode() * (4000 + k))
            time.sleep(pause)
        os.makedirs(os.path.join(stage, "android"))
        files.atomic_write(os.path.join(stage, "android", "model.tflite"),
                           f"{tag} android".encode())
""")


def set_hashes(folder) -> dict:
    """relative path -> sha256 of every file under ``folder``."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(
                    f.read()).hexdigest()
    return out


def leftovers(out) -> list:
    parent, name = os.path.split(os.path.realpath(out))
    return sorted(n for n in os.listdir(parent)
                  if n.startswith(f".{name}.") or n.startswith(".tmp-"))


def _writer(out, tag, exchange, pause=0.0):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(out), tag,
                             "1" if exchange else "0", str(pause)], env=env)


@pytest.mark.parametrize("exchange", [True, False],
                         ids=["exchange", "two-renames"])
def test_sigkill_at_any_moment_leaves_the_old_or_the_new_set(tmp_path,
                                                             exchange):
    out = tmp_path / "out"
    assert _writer(out, "old", exchange).wait() == 0
    old = set_hashes(out)
    started = time.monotonic()
    assert _writer(tmp_path / "ref", "new", exchange, pause=0.05).wait() == 0
    took = time.monotonic() - started   # start-up included
    new = set_hashes(tmp_path / "ref")
    assert old.keys() == new.keys() and old != new
    rng = random.Random(0)
    seen = {"old": 0, "new": 0}
    for k in range(20):
        if k >= 8 and seen["old"] and seen["new"]:
            break
        child = _writer(out, "new", exchange, pause=0.05)
        if k % 2:   # anywhere in the run
            time.sleep(rng.uniform(0.3, 1.2) * took)
        else:       # while it writes (~0.3 s) and switches the set
            _wait_for_stage(out, child, 10 * took)
            time.sleep(rng.uniform(0.0, 0.6))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        # what a reader finds after the kill, before any recovery
        now = set_hashes(out) if out.exists() else None
        if now is None:  # killed between the two renames of the fallback
            assert not exchange
            files.prepare_out(out)   # the next run restores the old set
            now = set_hashes(out)
        assert now in (old, new), sorted(now.items())[:2]
        seen["old" if now == old else "new"] += 1
        if now == new:  # start again from the old set
            assert _writer(out, "old", exchange).wait() == 0
    assert seen["old"] and seen["new"], seen  # both outcomes happened
    assert _writer(out, "new", exchange).wait() == 0
    assert set_hashes(out) == new
    assert leftovers(out) == []   # the successful run cleaned up


def test_files_get_the_umask_not_0600(tmp_path):
    old = os.umask(0o027)
    try:
        with files.staged_dir(tmp_path / "out") as stage:
            files.atomic_write(os.path.join(stage, "model.tflite"), b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "out" / "model.tflite").st_mode)
    assert mode == 0o640, oct(mode)
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o750


def test_the_output_folder_is_checked_before_any_work(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(ValueError, match=r"mine: holds 1 file.*notes.txt"):
        files.prepare_out(mine)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        files.prepare_out(a_file)
    with pytest.raises(OSError, match=r"file/out: cannot create"):
        files.prepare_out(a_file / "out")
    with pytest.raises(files.DiskFullError,
                       match=r"big: .* bytes free but the artifacts need"):
        files.prepare_out(tmp_path / "big", expected_bytes=1 << 62)
    assert (mine / "notes.txt").read_text() == "the user's"


def test_a_full_disk_names_the_folder_and_replaces_nothing(tmp_path,
                                                           monkeypatch):
    out = tmp_path / "out"
    with files.staged_dir(out) as stage:
        files.atomic_write(os.path.join(stage, "model.tflite"), b"old")
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(
        real_fdopen(fd, mode)))
    with pytest.raises(files.DiskFullError) as info:
        with files.staged_dir(out) as stage:
            files.atomic_write(os.path.join(stage, "model.tflite"), b"new")
    line = str(info.value)
    assert "\n" not in line and line.startswith(str(out)) and \
        "no space left" in line, line
    monkeypatch.undo()
    assert (out / "model.tflite").read_bytes() == b"old"
    assert leftovers(out) == []


def test_report_json_of_two_identical_runs_is_byte_identical(tmp_path):
    """Wall-clock numbers go to timings.json; everything else repeats."""
    from converters import convert
    from tfcompress.keras2.env import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(48, 8)).astype(np.float32)
    y = np.arange(48) % 3
    for run in ("a", "b"):
        art = convert(model, x, target="android")
        art.validate(x, y, require=False)
        art.save(str(tmp_path / run))
    a, b = ((tmp_path / r / "report.json").read_bytes() for r in "ab")
    assert a == b
    report = json.loads(a)
    assert "timings" not in report and "seconds" not in report[
        "validation"]["litert"]
    timings = json.loads((tmp_path / "a" / "timings.json").read_text())
    assert timings["timings"]["convert_s"] > 0
    assert timings["validation.litert"]["seconds"] > 0
    assert set_hashes(tmp_path / "a").keys() == set_hashes(
        tmp_path / "b").keys()


# -- the real commands, killed ---------------------------------------------
def _cli(*args):
    env = dict(os.environ, PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "tfcompress.cli", *args],
                            env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for_stage(out, child, limit: float) -> bool:
    parent, name = os.path.split(str(out))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and child.poll() is None:
        if any(n.startswith(f".{name}.tfc-stage-") for n in
               os.listdir(parent)):
            return True
        time.sleep(0.01)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("command", ["convert", "optimize"])
def test_sigkill_of_the_cli_leaves_the_old_or_the_new_set(tmp_path, command):
    from tfcompress.keras2.env import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    model.save(tmp_path / "m.h5")
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(64) % 3)
    out = tmp_path / "out"
    extra = (["--recipe", "prune_qat"] if command == "optimize" else [])

    def run(seed_file, folder=out):
        args = [command, str(tmp_path / seed_file), "--data",
                str(tmp_path / "d.npz"), "--target", "micro", "--out",
                str(folder), *extra]
        return _cli(*args)

    def hashes(folder):
        found = set_hashes(folder)
        found.pop("timings.json", None)   # wall-clock numbers
        return found

    started = time.monotonic()
    assert run("m.h5").wait() == 0
    took = time.monotonic() - started
    old = hashes(out)
    keras.utils.set_random_seed(1)   # the new set: other weights
    other = keras.models.clone_model(model)
    other.compile("adam", "sparse_categorical_crossentropy")
    other.save(tmp_path / "m2.h5")
    ref = run("m2.h5", tmp_path / "ref")
    _wait_for_stage(tmp_path / "ref", ref, 2 * took)
    staged = time.monotonic()
    assert ref.wait() == 0
    writing = time.monotonic() - staged   # staging to exit: the write window
    new = hashes(tmp_path / "ref")
    models = ("model.tflite", "model_data.cc", "model_data.h", "report.json")
    rng = random.Random(0)
    outcomes = []
    for k in range(6):
        child = run("m2.h5")
        if k % 2:   # somewhere in the run
            time.sleep(rng.uniform(0.3, 1.0) * took)
        else:       # while it writes and switches the set
            _wait_for_stage(out, child, 2 * took)
            time.sleep(rng.uniform(0.0, 1.2) * writing)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        now = hashes(out)
        if command == "convert":  # deterministic: exactly one of the two
            assert now in (old, new), now
        elif now != old:  # training may differ run to run: no mixing
            assert set(now) == set(old) and all(
                now[m] != old[m] for m in models), now
        outcomes.append("old" if now == old else "new")
    assert run("m2.h5").wait() == 0
    assert leftovers(out) == []
    print(f"{command}: one run {took:.1f} s, writing {writing:.1f} s, "
          f"outcomes {outcomes}")
