"""Robustness-audit benchmark: the adaptive attacks against torchattacks, the quick battery's wall time, and the
closing table of issue #12 (today's A-GD figure against the audit's worst case on the digits preset).

    python bench/audit.py                         # everything (trains the digits preset into --home if missing)
    python bench/audit.py --parts table --limit 100 --pool FP-s0 FP-s1 Q1-s0 Q2-s0 HT-s0
    python bench/audit.py --parts check battery   # only the cross-check and the battery time

Parts:
  check    APGD-CE, APGD-DLR and Square against torchattacks 3.3 (APGD, Square) on the same model, images and
           settings: a trained digits FP ResNet18 (width 0.25) and an untrained full-width CIFAR ResNet18 on
           random images labelled with its own predictions. Robust accuracy of each (ours should be within 2
           points or lower; with --seeds N, means over N attack seeds, each seed's pair printed below) and the
           process-CPU-time ratio ours / theirs (one thread, best of --repeats, summed over the seeds).
  battery  the whole quick battery on the 3-member digits ensemble FP + Q1 + Q2 over all test images at eps 0.1,
           computed afresh (no cache): wall time.
  table    at eps 0.1, for FP, Q1, Q2, HT alone, FP + Q1 + Q2 and the TREND-chosen 3-member ensemble (a PGD
           transfer run over the pool, ``trend select -k 3 --require FP-s0``): clean accuracy, robust accuracy
           under A-GD (20 steps, today's TREND-builder figure) and the audit's worst case, and the flags fired.
Each figure is printed with the machine's load average (``uptime``), since a shared CPU slows everything.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trend_core.config.specs import ModelSpec  # noqa: E402
from trend_core.models.zoo import Zoo, preset_specs  # noqa: E402

EPS = 0.1
ENSEMBLE = ["FP-s0", "Q1-s0", "Q2-s0"]
ALONE = ["FP-s0", "Q1-s0", "Q2-s0", "HT-s0"]


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def preset_by_label(zoo: Zoo, train: bool) -> dict[str, str]:
    """Short label (FP-s0, Q1-s0, ...) -> canonical name of every digits-preset model, trained if asked."""
    names = {}
    for spec in preset_specs("digits"):
        if not zoo.has(spec):
            if not train:
                continue
            print(f"training {spec.name} ({load()})", file=sys.stderr, flush=True)
            zoo.get_or_train(spec, device="cpu")
        names[spec.short_name] = spec.name
    return names


def timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


# ----------------------------------------------------------------------------- check
def cross_check(zoo: Zoo, names: dict[str, str], repeats: int, quick: bool, seeds: int = 1) -> None:
    import torchattacks

    from trend_core.attacks import APGD, Square, predict
    from trend_core.attacks.base import attack_mode
    from trend_core.data.datasets import load_dataset
    from trend_core.nn.build import build_model

    setups = []
    fp = zoo.load(names["FP-s0"])
    x, y = load_dataset("digits").tensors("test", 64 if quick else None)
    setups.append(("digits FP ResNet18-w0.25", fp, x, y, EPS, 20 if quick else 100, 100 if quick else 1000))
    cifar = build_model(ModelSpec.parse("cifar10/resnet18/FP/sgd/s0")).eval()
    xc = torch.rand(8 if quick else 32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        yc = cifar(xc).argmax(1)
    setups.append(
        ("CIFAR ResNet18 (untrained)", cifar, xc.clone(), yc.clone(), 8 / 255, 5 if quick else 20, 20 if quick else 100)
    )
    print(f"\n== cross-check against torchattacks 3.3 (robust accuracy %, CPU seconds; {load()})")
    print(f"{'setup':28} {'attack':9} {'ours %':>7} {'theirs %':>8} {'ours s':>8} {'theirs s':>8} {'ratio':>6}")
    for setup, model, xs, ys, eps, steps, queries in setups:
        pairs = [
            (
                "APGD-CE",
                lambda seed: APGD(eps, steps=steps, loss="ce", seed=seed)(model, xs, ys).x_adv,
                lambda seed: torchattacks.APGD(model, eps=eps, steps=steps, loss="ce", n_restarts=1, seed=seed)(xs, ys),
            ),
            (
                "APGD-DLR",
                lambda seed: APGD(eps, steps=steps, loss="dlr", seed=seed)(model, xs, ys).x_adv,
                lambda seed: torchattacks.APGD(model, eps=eps, steps=steps, loss="dlr", n_restarts=1, seed=seed)(
                    xs, ys
                ),
            ),
            (
                "Square",
                lambda seed: Square(eps, queries=queries, seed=seed)(model, xs, ys).x_adv,
                lambda seed: torchattacks.Square(model, eps=eps, n_queries=queries, seed=seed)(xs, ys),
            ),
        ]
        right = predict(model, xs) == ys
        for label, ours, theirs in pairs:
            r_ours, r_theirs, t_ours, t_theirs = [], [], 0.0, 0.0
            for seed in range(seeds):  # a random start moves APGD by a point or two: compare means over seeds
                t, adv_ours = timed(lambda: ours(seed), repeats)
                t_ours += t
                with attack_mode(model):
                    t, adv_theirs = timed(lambda: theirs(seed), repeats)
                t_theirs += t
                r_ours.append(float((right & (predict(model, adv_ours) == ys)).float().mean()))
                r_theirs.append(float((right & (predict(model, adv_theirs) == ys)).float().mean()))
            mean_ours, mean_theirs = 100 * sum(r_ours) / seeds, 100 * sum(r_theirs) / seeds
            print(
                f"{setup:28} {label:9} {mean_ours:7.1f} {mean_theirs:8.1f} {t_ours:8.2f} {t_theirs:8.2f} "
                f"{t_ours / t_theirs:6.2f}",
                flush=True,
            )
            if seeds > 1:
                print(
                    f"{'':28} {'seeds':9} " + " ".join(f"{100 * a:.1f}/{100 * b:.1f}" for a, b in zip(r_ours, r_theirs))
                )


# ----------------------------------------------------------------------------- battery
def battery_time(zoo: Zoo, names: dict[str, str], limit: int | None) -> None:
    from trend_core.experiments.audit import run_audit
    from trend_core.storage.store import MemoryStore

    members = [names[label] for label in ENSEMBLE]
    before = load()
    start = time.perf_counter()
    report = run_audit(
        zoo=zoo,
        models=members,
        ensemble=True,
        epsilons=[EPS],
        level="quick",
        limit=limit,
        cache=MemoryStore(),
        device="cpu",
    )
    wall = time.perf_counter() - start
    print(
        f"\n== quick battery on {' + '.join(ENSEMBLE)}, {report.n_images} test images, eps {EPS}: "
        f"{wall:.0f} s wall ({before} before, {load()} after)"
    )
    print(report.robust.to_string(index=False))


# ----------------------------------------------------------------------------- table
def closing_table(zoo: Zoo, names: dict[str, str], pool: list[str], limit: int | None, store) -> None:
    import pandas as pd

    from trend_core.attacks import PGD
    from trend_core.ensemble.selection import select_ensembles
    from trend_core.experiments.audit import SUMMARY_COLUMNS, run_audit, summary_row
    from trend_core.experiments.transfer import run_transfer

    missing = [label for label in pool if label not in names]
    if missing:
        raise SystemExit(f"not in the zoo: {', '.join(missing)}")
    print(f"\n== TREND choice: PGD-40 eps {EPS} transfer over {', '.join(pool)} ({load()})", flush=True)
    models = [zoo.load(names[label]) for label in pool]
    tm = run_transfer(models, PGD(eps=EPS), limit=limit, cache=store).matrix(averages=False)
    chosen = select_ensembles(tm, 3, require=["FP-s0"], top=1).iloc[0]["members"]
    print(f"TREND-chosen 3-member ensemble (require FP-s0): {' + '.join(chosen)}")
    targets = [(label, [label], False) for label in ALONE if label in names]
    targets.append((" + ".join(ENSEMBLE), ENSEMBLE, True))
    targets.append((f"TREND: {' + '.join(chosen)}", list(chosen), True))
    rows, fired = [], {}
    for label, members, vote in targets:
        start = time.perf_counter()
        report = run_audit(
            zoo=zoo,
            models=[names[m] for m in members],
            ensemble=vote,
            epsilons=[EPS],
            level="quick",
            limit=limit,
            cache=store,
            device="cpu",
        )
        rows.append(summary_row(label, report, EPS))
        fired[label] = [f for f in report.flags if f.fired]
        print(f"  audited {label} in {time.perf_counter() - start:.0f} s ({load()})", flush=True)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    shown = table.assign(
        **{c: (100 * table[c]).round(1) for c in ("clean_accuracy", "agd_accuracy", "worst_case_accuracy")}
    )
    print(f"\n== closing table: digits, eps {EPS}, {report.n_images} test images (accuracy %; {load()})")
    print(
        shown.drop(columns=["eps"])
        .rename(columns={"clean_accuracy": "clean", "agd_accuracy": "A-GD", "worst_case_accuracy": "worst case"})
        .to_string(index=False)
    )
    for label, flags in fired.items():
        for flag in flags:
            print(f"  {label} / {flag.name}: {flag.sentence}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", nargs="+", default=["check", "battery", "table"], choices=["check", "battery", "table"]
    )
    parser.add_argument(
        "--home",
        default=str(Path(__file__).resolve().parents[1] / ".trend-home" / "bench"),
        help="zoo and store folder (the digits preset is trained here when missing)",
    )
    parser.add_argument("--no-train", action="store_true", help="use only the preset models already in --home")
    parser.add_argument(
        "--pool",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="the TREND candidate pool (default: the whole digits preset)",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="check: robust accuracy as the mean over this many attack seeds (ours and theirs)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from trend_core.storage.store import Store

    zoo = Zoo(args.home)
    names = preset_by_label(zoo, train=not args.no_train)
    if "check" in args.parts:
        cross_check(zoo, names, args.repeats, args.quick, args.seeds)
    if "battery" in args.parts:
        battery_time(zoo, names, args.limit)
    if "table" in args.parts:
        closing_table(zoo, names, args.pool or list(names), args.limit, Store(args.home))


if __name__ == "__main__":
    main()
