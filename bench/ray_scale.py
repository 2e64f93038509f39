"""Ray executor: overhead with one worker against the local executor, and scaling from one worker to two.

    python bench/ray_scale.py [--workers 2] [--limit 128] [--steps 10] [--epochs 4] [--repeats 1]

Times, in one run and with one thread per worker (and one for the local executor): a 6-model digits transfer
run (PGD, no store: everything is computed) and the 3-model quick demo training, on the local executor, on a
one-worker local Ray cluster and on an N-worker one. Workers are warmed up (torch imported) before timing,
as on a running cluster. Prints the ratios; on a loaded machine repeat and read the load average printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trend_core.attacks.pgd import PGD  # noqa: E402
from trend_core.experiments.transfer import run_transfer  # noqa: E402
from trend_core.models.zoo import PRESETS, Zoo  # noqa: E402
from trend_core.models.zoo_training import train_specs  # noqa: E402
from trend_core.runtime.executors import LocalExecutor, RayExecutor  # noqa: E402

DEMO = ("digits/resnet18-w0.25/FP/sgd/s0", "digits/resnet18-w0.25/Q2/sgd/s0", "digits/resnet18-w0.25/Q1/sgd/s0")


def warm(seconds: float = 1.0) -> int:
    """A unit that loads torch and the engine, and holds its worker long enough for the others to start too."""
    import torch  # noqa: F401

    import trend_core.experiments.transfer  # noqa: F401
    import trend_core.experiments.units  # noqa: F401
    import trend_core.training.units  # noqa: F401

    time.sleep(seconds)
    return os.getpid()


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="workers of the scaled cluster (default 2)")
    parser.add_argument("--limit", type=int, default=128, help="test images per transfer run (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the benchmarked models (default 4)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats; the fastest counts (default 1)")
    parser.add_argument(
        "--zoo",
        default=str(Path(tempfile.gettempdir()) / "trend-bench-ray-zoo"),
        help="where the six transfer models are trained once and then loaded from",
    )
    parser.add_argument("--skip-training", action="store_true", help="time only the transfer run")
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    transfer_names = [f"{name}/e{args.epochs}" for name in PRESETS["digits"][:6]]
    demo_names = [f"{name}/e{args.epochs}" for name in DEMO]
    zoo = Zoo(args.zoo)
    attack = PGD(eps=0.1, steps=args.steps)
    print(
        f"torch {torch.__version__}, ray {ray.__version__}; transfer: {len(transfer_names)} models, "
        f"{args.limit} images, PGD-{args.steps}; training: {len(demo_names)} models x {args.epochs} epochs; "
        f"{load()}",
        flush=True,
    )

    def transfer(executor) -> None:
        models = [zoo.load(name) for name in transfer_names]
        run_transfer(models, attack, limit=args.limit, cache=None, device="cpu", executor=executor)

    def training(executor) -> None:
        with tempfile.TemporaryDirectory() as home:
            train_specs(Zoo(home), demo_names, device="cpu", executor=executor)

    if not all(zoo.has(name) for name in transfer_names):  # set-up, not timed: train the six models once
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        train_specs(zoo, transfer_names, device="cpu", executor=RayExecutor())
        print(f"trained the transfer models into {zoo.root}", flush=True)
    rows: dict[str, dict[str, float]] = {}
    for setup in ("local", "ray x1", f"ray x{args.workers}"):
        if setup == "local":
            executor = LocalExecutor()
        else:
            ray.shutdown()
            workers = 1 if setup == "ray x1" else args.workers
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            executor = RayExecutor()
            pids = {f.result() for f in [executor.submit(warm, 2.0) for _ in range(workers)]}
            print(f"{setup}: {len(pids)} warm worker(s)", flush=True)
        rows[setup] = {"transfer": timed(lambda: transfer(executor), args.repeats)}
        if not args.skip_training:
            rows[setup]["training"] = timed(lambda: training(executor), args.repeats)
        print(f"{setup}: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows[setup].items()) + f"  ({load()})", flush=True)
    ray.shutdown()
    scaled = f"ray x{args.workers}"
    for what in rows["local"]:
        print(
            f"{what}: overhead ray x1 / local = {rows['ray x1'][what] / rows['local'][what]:.2f}x; "
            f"scaling {scaled} / ray x1 = {rows[scaled][what] / rows['ray x1'][what]:.2f}x "
            f"(ideal {1 / args.workers:.2f})"
        )


if __name__ == "__main__":
    main()
