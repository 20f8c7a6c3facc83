"""Compression-aware training under ``tf.distribute``.

Every strategy run happens in a fresh process (``tests/distribute_worker.py``):
logical devices and ``MultiWorkerMirroredStrategy`` must be configured
before TensorFlow initializes. One MirroredStrategy process (2 logical CPUs)
runs PCQAT (prune, cluster, quantize) and the same on a single device, so
TF starts once; these training runs are in the slow tier (``make
test-all``), the strategy's argument checks in ``make test``.
"""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distribute_worker.py")
sys.path.insert(0, HERE)
import distribute_worker as dw  # noqa: E402

MODES = ("prune", "cluster", "quantize", "pcqat")
TIMEOUT_S = 240
ACC_TOL = 0.04  # 10 of 256 test samples


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    return env


def _run(args, env, timeout=TIMEOUT_S):
    proc = subprocess.run([sys.executable, WORKER, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _mirrored(factory, modes) -> dict:
    out = factory.mktemp("mirrored") / "result.json"
    _run(["--strategy", "mirrored", "--modes", ",".join(modes),
          "--out", str(out)], _env())
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """PCQAT (its three stages) under MirroredStrategy and on one device."""
    return _mirrored(tmp_path_factory, ["pcqat"])


@pytest.fixture(scope="module")
def mirrored_rest(tmp_path_factory):
    """The single techniques, in the slow tier."""
    return _mirrored(tmp_path_factory, [m for m in MODES if m != "pcqat"])


def _check_against_single(run: dict, single: dict, mode: str) -> None:
    """What matters matches single-device training."""
    for layer, s in single["sparsity"].items():
        assert run["sparsity"][layer] == pytest.approx(s, abs=0.01), layer
    if mode in ("prune", "pcqat"):
        assert min(run["sparsity"].values()) >= dw.SPARSITY - 0.01
    if mode == "cluster":
        assert max(run["unique"].values()) <= dw.CLUSTERS
    if mode == "pcqat":  # CQAT clusters conv kernels per output channel
        assert max(run["unique_per_channel"].values()) <= dw.CLUSTERS
        assert run["unique"]["fc"] <= dw.CLUSTERS
        assert run["unique"]["logits"] <= dw.CLUSTERS
    assert run["unique"] == pytest.approx(single["unique"], abs=2)
    assert abs(run["accuracy"] - single["accuracy"]) <= ACC_TOL


def _check_steps(run: dict, mode: str) -> None:
    """The pruning step ends equal to the optimizer steps; every replica
    holds the same values."""
    for probe in run["probes"]:
        assert probe["replicas_differ"] == []
        for layer, step in probe["pruning_steps"].items():
            assert step == probe["iterations"], layer
    pruned = [p for p in run["probes"] if p["pruning_steps"]]
    assert len(pruned) == (1 if mode in ("prune", "pcqat") else 0)


def _check_mirrored(result: dict, mode: str) -> None:
    assert result["replicas"] == 2
    run, single = result["mirrored"][mode], result["single"][mode]
    assert run["probes"][0]["variable_type"] == "MirroredVariable"
    _check_steps(run, mode)
    _check_against_single(run, single, mode)
    # SparsityLogger read the mirrored kernels each epoch.
    last = run["stages"][-1]
    assert last["logged_sparsity"][-1] == pytest.approx(last["sparsity"])
    if mode != "cluster":
        assert run["accuracy"] >= result["base_accuracy"] - 0.1


@pytest.mark.slow
def test_mirrored_pcqat_matches_single_device(mirrored):
    _check_mirrored(mirrored, "pcqat")


@pytest.mark.slow
@pytest.mark.parametrize("mode", [m for m in MODES if m != "pcqat"])
def test_mirrored_matches_single_device(mirrored_rest, mode):
    _check_mirrored(mirrored_rest, mode)


@pytest.mark.slow
def test_mirrored_pcqat_uses_collaborative_scheme(mirrored):
    stages = mirrored["mirrored"]["pcqat"]["stages"]
    assert [s["kind"] for s in stages] == ["prune", "cluster", "quantize"]
    assert stages[-1]["scheme"] == "PCQAT"
    assert stages[1]["max_unique"] <= dw.CLUSTERS  # after clustering


def test_get_strategy_names_and_errors(monkeypatch):
    from tfcompress.pipeline.distribute import get_strategy, is_chief
    assert get_strategy("none") is None and get_strategy(None) is None
    assert is_chief(None)
    with pytest.raises(ValueError, match=r"'mirorred'.*'mirrored'"):
        get_strategy("mirorred")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG.*not set"):
        get_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="'task'"):
        get_strategy("multiworker")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_config(ports, index):
    return json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index}})


def _run_workers(argv_for, ports, timeout=TIMEOUT_S):
    """Start one process per worker, wait for all, kill them on timeout."""
    procs = [subprocess.Popen(
        [sys.executable, *argv_for(i)],
        env=_env(TF_CONFIG=_tf_config(ports, i)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(len(ports))]
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [f"worker {i} (exit {p.returncode}):\n{out[-2000:]}"
              for i, (p, out) in enumerate(zip(procs, outs)) if p.returncode]
    assert not failed, "\n".join(failed)
    return outs


@pytest.mark.slow
def test_multiworker_two_workers_agree_and_match_single(tmp_path):
    ports = _free_ports(2)
    outs = [tmp_path / f"worker{i}.json" for i in range(2)]

    def argv(i):
        return [WORKER, "--strategy", "multiworker", "--out", str(outs[i])]\
            + (["--reference"] if i == 0 else [])
    _run_workers(argv, ports)
    chief, other = (json.loads(p.read_text()) for p in outs)
    assert chief["replicas"] == other["replicas"] == 2
    for mode in MODES:
        run, run2 = chief["multiworker"][mode], other["multiworker"][mode]
        assert run["weights_digest"] == run2["weights_digest"], mode
        _check_steps(run, mode)
        _check_against_single(run, chief["single"][mode], mode)


@pytest.mark.slow
def test_cli_optimize_multiworker_only_chief_writes(tmp_path):
    from conftest import compile_clf, small_cnn
    (x, y), _ = dw.data()
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"stages": dw.RECIPES["pcqat"],
                                  "fit": dw.FIT}))
    ports = _free_ports(2)

    def argv(i):
        return ["-m", "tfcompress.cli", "optimize", str(tmp_path / "m.keras"),
                "--data", str(tmp_path / "d.npz"), "--recipe", str(recipe),
                "--target", "android", "--strategy", "multiworker",
                "--out", str(tmp_path / "out"),
                "--checkpoint-dir", str(tmp_path / "ckpt")]
    logs = _run_workers(argv, ports)
    assert "worker:1 is not the chief" in logs[1]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["validation"]["litert"]["agreement"] >= 0.95
    assert [s["kind"] for s in report["stages"]] == ["prune", "cluster",
                                                     "quantize"]
    assert report["stages"][0]["sparsity"] >= dw.SPARSITY - 0.01
    saved = json.loads((tmp_path / "ckpt" / "stages.json").read_text())
    assert len(saved) == 3  # written by the chief, resumable
    # worker 1 saved the same artifacts into a temporary folder, then
    # removed it
    tmp_out = re.findall(r"wrote (\S*tfcompress_worker_\S*)", logs[1])
    assert tmp_out and not any(os.path.exists(p) for p in tmp_out)


def test_cli_multiworker_without_tf_config_fails_in_one_line(tmp_path,
                                                             monkeypatch):
    from click.testing import CliRunner
    from tfcompress.cli.main import main
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8, 1), np.float32),
             y=np.zeros(4, np.int64))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = CliRunner().invoke(main, [
        "optimize", str(tmp_path / "m.keras"), "--data",
        str(tmp_path / "d.npz"), "--recipe", "pcqat", "--out",
        str(tmp_path / "out"), "--strategy", "multiworker"])
    assert result.exit_code == 1
    assert "TF_CONFIG environment variable is not set" in result.output
    assert not (tmp_path / "out").exists()
