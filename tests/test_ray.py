"""The Ray executor on a real local cluster (``ray.init(num_cpus=2)``, no mocks): same zoo, same TM, same store.

One cluster serves the whole session. Units run with one thread per worker, and the local references here are
computed with one thread too, so weights and adversarial images match bit for bit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from trend_core.errors import TrendError  # noqa: E402
from trend_core.experiments.eval_data import evaluation_data  # noqa: E402
from trend_core.experiments.transfer import run_transfer  # noqa: E402
from trend_core.experiments.transfer_keys import CACHE_VERSION, attack_keys  # noqa: E402
from trend_core.models.zoo import Zoo  # noqa: E402
from trend_core.models.zoo_training import train_specs  # noqa: E402
from trend_core.runtime.executors import Executor, get_executor  # noqa: E402
from trend_core.storage.store import MemoryStore, Store, content_key, model_fingerprint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
from trend_core.config.presets import QUICK_DEMO  # noqa: E402

LIMIT = 64
pytestmark = pytest.mark.slow


@contextlib.contextmanager
def one_thread():
    """Compute the local reference with one thread, as each Ray worker does."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_executor(tmp_path_factory):
    """A two-CPU local Ray cluster for the session; its workers see an empty TREND_DATA (no CIFAR anywhere)."""
    empty = tmp_path_factory.mktemp("no-data")
    saved = os.environ.get("TREND_DATA")
    os.environ["TREND_DATA"] = str(empty)  # the raylet and its workers inherit this environment
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        if saved is None:
            os.environ.pop("TREND_DATA", None)
        else:
            os.environ["TREND_DATA"] = saved
    yield get_executor("ray")
    ray.shutdown()


@pytest.fixture(scope="module")
def demo_zoos(tmp_path_factory, ray_executor):
    """The quick demo zoo trained by `trend train` on the local executor (a fresh process, one thread) and
    through Ray: (local zoo, Ray zoo)."""
    local = Zoo(tmp_path_factory.mktemp("local-zoo"))
    remote = Zoo(tmp_path_factory.mktemp("ray-zoo"))
    env = {**_cli_env(), "OMP_NUM_THREADS": "1"}
    env.pop("TREND_RAY_ADDRESS")
    done = subprocess.run(
        [sys.executable, "-m", "trend_core", "train", *QUICK_DEMO, "--device", "cpu", "--home", str(local.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    train_specs(remote, QUICK_DEMO, device="cpu", executor=ray_executor)
    return local, remote


@pytest.fixture(scope="module")
def attack():
    from trend_core.cli.transfer import build_attack

    return build_attack("pgd", "digits", eps="0.1", steps="20")


@pytest.fixture(scope="module")
def reference(demo_zoos, attack, tmp_path_factory):
    """The local transfer run over the demo zoo: (models, result, its store)."""
    models = [demo_zoos[0].load(name) for name in QUICK_DEMO]
    store = Store(tmp_path_factory.mktemp("local-store"))
    with one_thread():
        result = run_transfer(models, attack, limit=LIMIT, cache=store, device="cpu", executor="local")
    return models, result, store


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_ray_trained_demo_zoo_equals_local(demo_zoos):
    local, remote = demo_zoos
    for name in QUICK_DEMO:
        a, b = local.load(name).state_dict(), remote.load(name).state_dict()
        assert a.keys() == b.keys()
        meta_a, meta_b = local.metadata(name), remote.metadata(name)
        assert all(torch.equal(a[k], b[k]) for k in a), (name, meta_a["history"], meta_b["history"])
        assert meta_a["test_acc"] == meta_b["test_acc"] and meta_a["val_acc"] == meta_b["val_acc"]
        assert meta_b["test_acc"] > 0.5  # a trained model, not an initialisation


def test_ray_transfer_gives_identical_tm_and_store(reference, attack, ray_executor, tmp_path):
    models, expected, local_store = reference
    store = Store(tmp_path / "ray-home")
    steps = []
    result = run_transfer(
        models,
        attack,
        limit=LIMIT,
        cache=store,
        device="cpu",
        executor=ray_executor,
        progress=lambda f, m: steps.append((f, m)),
    )
    assert result.pairs.equals(expected.pairs)
    assert result.matrix().equals(expected.matrix())
    assert expected.pairs["generated"].sum() > 0  # the comparison covers real adversarial images
    assert [f for f, _ in steps] == pytest.approx([1 / 3, 2 / 3, 1]) and not any("(cached)" in m for _, m in steps)
    keys = set(store.keys())
    assert keys == set(local_store.keys())
    differ = [k for k in keys if not _same(store.get(k), local_store.get(k))]
    assert not differ, [(k, store.get(k), local_store.get(k)) for k in differ[:2]]


def test_ensemble_sweep_and_tm_points_through_ray_match_local(reference, ray_executor):
    from trend_core.experiments.curve import measure_tm
    from trend_core.experiments.ensemble_sweep import robustness_sweep

    models = reference[0]
    with one_thread():
        local = robustness_sweep(
            models,
            [0.05, 0.1],
            rules=("agd",),
            limit=32,
            steps=5,
            cache=False,
            device="cpu",
            executor="local",
            members_alone=True,
        )
    remote = robustness_sweep(
        models,
        [0.05, 0.1],
        rules=("agd",),
        limit=32,
        steps=5,
        cache=False,
        device="cpu",
        executor=ray_executor,
        members_alone=True,
    )
    assert remote.equals(local)
    with one_thread():
        points = measure_tm(models[0], models[1], [0.05, 0.1, 0.15], limit=32, cache=False, device="cpu")
    from trend_core.runtime import executors

    executors.set_default("ray")  # measure_tm takes the process's executor, as the CLI's --executor sets it
    try:
        remote_points = measure_tm(models[0], models[1], [0.05, 0.1, 0.15], limit=32, cache=False, device="cpu")
    finally:
        executors.set_default(None)
    assert remote_points.equals(points)


def test_worker_killed_mid_task_still_gives_the_same_result(reference, attack, ray_executor):
    models, expected, _ = reference
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = run_transfer(
                models, attack, limit=LIMIT, cache=MemoryStore(), device="cpu", executor=ray_executor
            )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        pids = _busy_worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.02)
    thread.join(timeout=600)
    assert killed is not None, "no Ray worker was seen running a unit"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].pairs.equals(expected.pairs)


def test_killed_driver_resumes_from_the_store(demo_zoos, reference, attack, ray_executor, tmp_path):
    models, expected, _ = reference
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(demo_zoos[0].models_dir, target_is_directory=True)
    store = Store(home)
    x, y = evaluation_data(models, None, "test", LIMIT)
    data_key = content_key(CACHE_VERSION, "data", x, y)
    summaries = [attack_keys(attack, [0.1], data_key, model_fingerprint(m))[0] for m in models]
    cmd = [
        sys.executable,
        "-m",
        "trend_core",
        "transfer",
        "--models",
        *QUICK_DEMO,
        "--attack",
        "pgd",
        "--eps",
        "0.1",
        "--steps",
        "20",
        "--limit",
        str(LIMIT),
        "--device",
        "cpu",
        "--home",
        str(home),
        "--executor",
        "ray",
    ]
    driver = subprocess.Popen(cmd, env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while driver.poll() is None and time.monotonic() < deadline and not any(store.has(k) for k in summaries):
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)  # the driver dies with work in flight
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, driver.stderr.read().decode()[-2000:]
    stored = [store.has(k) for k in summaries]
    assert any(stored) and not all(stored)
    counting = _Counting(ray_executor)
    result = run_transfer(models, attack, limit=LIMIT, cache=store, device="cpu", executor=counting)
    assert result.pairs.equals(expected.pairs)
    assert counting.units.count("attack_unit") == stored.count(False)  # stored attacks are not run again


def test_trend_error_in_a_task_is_one_line(ray_executor, tmp_path):
    cifar = "cifar10/resnet18-w0.25/FP/sgd/s0/e1"
    with pytest.raises(TrendError) as info:  # the workers' TREND_DATA holds no CIFAR
        train_specs(Zoo(tmp_path / "zoo"), [cifar], device="cpu", executor=ray_executor)
    message = str(info.value)
    assert "\n" not in message and "CIFAR" in message.upper() and "Ray" not in message
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trend_core",
            "train",
            cifar,
            "--device",
            "cpu",
            "--home",
            str(tmp_path / "cli"),
            "--executor",
            "ray",
        ],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("trend: error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr and "RayTaskError" not in done.stderr
    assert lines[0].removeprefix("trend: error: ") == message


def test_executor_choice_is_checked_in_one_sentence(monkeypatch):
    monkeypatch.setenv("TREND_EXECUTOR", "spark")
    with pytest.raises(TrendError, match="Unknown executor 'spark'; choose local or ray"):
        get_executor()
    monkeypatch.delenv("TREND_EXECUTOR")
    monkeypatch.delenv("TREND_RAY_ADDRESS", raising=False)
    assert get_executor().name == "local"


# ----------------------------------------------------------------------------- helpers
class _Counting(Executor):
    """The session's Ray executor, recording which units are submitted to it."""

    distributed = True

    def __init__(self, inner: Executor):
        self.inner, self.units = inner, []

    def submit(self, fn, *args, gpu: bool = False, **kwargs):
        self.units.append(fn.__name__)
        return self.inner.submit(fn, *args, gpu=gpu, **kwargs)

    def put(self, value):
        return self.inner.put(value)

    def cancel(self, future) -> None:
        self.inner.cancel(future)


def _busy_worker_pids() -> list[int]:
    """Ray names a worker's process ``ray::<function>`` while it runs a task (``ray::IDLE`` otherwise)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::_run_unit"):
                pids.append(int(entry.name))
    return pids


def _cli_env() -> dict:
    """The CLI joins the session's cluster as a second driver."""
    env = {
        **os.environ,
        "TREND_RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("TREND_EXECUTOR", None)
    return env


def test_sidebar_shows_the_executor(ray_executor, monkeypatch, tmp_path):
    from app_support import open_app, texts

    monkeypatch.setenv("TREND_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TREND_EXECUTOR", raising=False)
    monkeypatch.delenv("TREND_RAY_ADDRESS", raising=False)
    assert any(c.startswith("Executor: local") for c in texts(open_app().sidebar.caption))
    monkeypatch.setenv("TREND_RAY_ADDRESS", "auto")  # joins the running cluster (this session's)
    captions = texts(open_app().sidebar.caption)
    assert any(
        c.startswith("Executor: Ray at auto: 1 node, 0 GPUs, 2 CPUs; tasks 0 running, 0 queued") for c in captions
    ), captions
