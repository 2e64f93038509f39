"""Processes killed with os.kill (SIGKILL: no cleanup runs) while they write the zoo or compute a transfer:
the old model or the new one survives, never a mix or nothing; two identical runs compute each attack once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import FP, Q1, REPO

from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.models.zoo import Zoo

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TREND_JOBS_SYNC": "1"}


def _copy_model(test_zoo, zoo_model, home, name=FP) -> ModelSpec:
    zoo_model(name)
    spec = ModelSpec.parse(name)
    (home / "models").mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".safetensors"):
        shutil.copy2(test_zoo.models_dir / f"{spec.key}{suffix}", home / "models" / f"{spec.key}{suffix}")
    return spec


def test_retrain_killed_midway_keeps_the_old_model(tmp_path, test_zoo, zoo_model):
    spec = _copy_model(test_zoo, zoo_model, tmp_path)
    before = (tmp_path / "models" / f"{spec.key}.safetensors").read_bytes()
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trend_core", "train", "--force", FP, "--home", str(tmp_path), "--device", "cpu"],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=ENV,
        )
        deadline = time.monotonic() + 300
        while b"epoch" not in log.read_bytes() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the epoch bar appears once training has begun
        assert proc.poll() is None, log.read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    zoo = Zoo(tmp_path)
    assert zoo.has(spec) and [m["name"] for m in zoo.list()] == [FP]
    assert (tmp_path / "models" / f"{spec.key}.safetensors").read_bytes() == before
    zoo.load(spec)


SAVE_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    import torch
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo

    home, source, name, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    model = Zoo(source).load(name)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    calls, replace = [0], os.replace

    def replace_then_die(src, dst):
        replace(src, dst)
        calls[0] += 1
        if calls[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace_then_die
    Zoo(home).save(ModelSpec.parse(name), model, {"source": "killed test"})
""")


def _outcome(home, original: dict) -> str:
    """'old' / 'new' / 'absent' for the model in ``home``, checking that listing and loading agree."""
    zoo = Zoo(home)
    listed = FP in [m["name"] for m in zoo.list()]
    try:
        state = zoo.load(FP).state_dict()
    except TrendError:
        assert not listed, "listed but not loadable"
        return "absent"
    assert listed, "loadable but not listed"
    key = next(k for k, v in original.items() if v.is_floating_point() and k.endswith("weight"))
    if torch.equal(state[key], original[key]):
        return "old"
    assert torch.allclose(state[key], original[key] + 0.01), "a mix of weights"
    return "new"


@pytest.mark.parametrize("existing", [True, False], ids=["over an existing model", "a new model"])
@pytest.mark.parametrize("kill_after", [1, 2, 3])
def test_a_save_killed_after_any_rename_leaves_the_old_model_or_the_new_one(
    tmp_path, test_zoo, zoo_model, existing, kill_after
):
    home = tmp_path / "home"
    home.mkdir()
    if existing:
        _copy_model(test_zoo, zoo_model, home)
    zoo_model(FP)
    proc = subprocess.run(
        [sys.executable, "-c", SAVE_AND_DIE, str(home), str(test_zoo.root), FP, str(kill_after)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    outcome = _outcome(home, test_zoo.load(FP).state_dict())
    assert outcome in (("old", "new") if existing else ("absent", "new"))
    assert outcome == "new" or proc.returncode == -signal.SIGKILL
    assert Zoo(home).clean() is not None and _outcome(home, test_zoo.load(FP).state_dict()) == outcome


BARRIER_RUN = textwrap.dedent("""
    import os, sys, time
    import trend_core.attacks.base as base

    runs, run = [0], base.Attack.run

    def counted(self, *args, **kwargs):
        runs[0] += 1
        return run(self, *args, **kwargs)

    base.Attack.run = counted
    ready, other = sys.argv[1], sys.argv[2]
    open(ready, "w").close()
    while not os.path.exists(other):
        time.sleep(0.01)
    from trend_core.cli import main
    code = main(sys.argv[3:])
    print(f"attack runs: {runs[0]}", file=sys.stderr)
    sys.exit(code)
""")


def test_two_identical_transfer_runs_at_once_attack_each_source_once(tmp_path, linked_zoo_home):
    argv = [
        "transfer",
        "--models",
        FP,
        Q1,
        "--attack",
        "pgd",
        "--steps",
        "5",
        "--limit",
        "60",
        "--device",
        "cpu",
        "--home",
        str(linked_zoo_home),
        "--json",
        "--executor",
        "local",  # attacks counted in this process (worker processes take the same store locks)
    ]
    flags = [tmp_path / "a.ready", tmp_path / "b.ready"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BARRIER_RUN, str(flags[i]), str(flags[1 - i]), *argv],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    runs = [int(err.rsplit("attack runs: ", 1)[1].split()[0]) for _, err in outputs]
    assert sum(runs) == 2, runs  # two sources, each attacked by one of the two processes
    assert outputs[0][0] == outputs[1][0]  # the same matrix
