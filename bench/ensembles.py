"""Ensemble measurements on the digits preset (issue 4): attack success of the four ensemble attacks, the TREND
choice for k = 3 and its robustness against each member alone, and the TM(eps) fit's RMSE for two pairs.

    python bench/ensembles.py                          # preset in .trend-home/bench (trained if missing), all 360 test images
    python bench/ensembles.py --home DIR --limit 120   # another zoo / fewer images

Results are cached in the zoo's results store, so a rerun prints the same tables at once (--no-cache: afresh).
Every number is measured in this run; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trend_core.attacks import PGD  # noqa: E402
from trend_core.attacks.ensemble_pgd import RULE_LABELS, RULE_NAMES  # noqa: E402
from trend_core.config.labels import model_labels  # noqa: E402
from trend_core.ensemble.selection import select_ensembles
from trend_core.errors import TrendError  # noqa: E402
from trend_core.experiments.curve import default_fit_eps, fit_tm  # noqa: E402
from trend_core.experiments.ensemble_sweep import robustness_ratios, robustness_sweep  # noqa: E402
from trend_core.experiments.transfer import run_transfer  # noqa: E402
from trend_core.models.zoo import Zoo, preset_specs  # noqa: E402
from trend_core.nn.vote import MajorityVote
from trend_core.runtime.devices import resolve_device  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ATTACK_EPS = [0.02, 0.05, 0.1, 0.2, 0.3]  # five eps over the digits range (default eps 0.1)
ROBUST_EPS = [0.05, 0.1]
TRANSFER_EPS = 0.1
MIN_ACC = 0.9  # the accuracy floor of the third TREND choice
PAIRS = [("FP-s0", "Q2-s0"), ("FP-s0", "FP-s1")]  # a low-TM and a high-TM pair
MEASURED_EPS = [round(v, 4) for v in np.linspace(0.02, 0.3, 12)]


def show(title: str, frame: pd.DataFrame, fmt: str = "{:.3f}") -> None:
    print(f"\n## {title}")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(frame.to_string(float_format=lambda v: fmt.format(v)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=str(REPO / ".trend-home" / "bench"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="first N test images (default: all 360)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--step-size", type=float, default=0.01)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    zoo = Zoo(args.home)
    if args.no_cache:
        store = None
    else:
        from trend_core.storage.store import get_store

        store = get_store(args.home)
    start = time.perf_counter()

    # -- the preset ----------------------------------------------------------------------------------------
    specs = preset_specs("digits")
    models = [zoo.get_or_train(spec, device=str(device)).to(device) for spec in specs]
    labels = model_labels(models)
    by_label = dict(zip(labels, models))
    accuracies = {label: zoo.metadata(spec)["test_acc"] for label, spec in zip(labels, specs)}
    show(f"digits preset in {zoo.root} (clean test accuracy)", pd.Series(accuracies, name="test_acc").to_frame())
    common = dict(limit=args.limit, steps=args.steps, step_size=args.step_size, cache=store, device=str(device))

    # -- 1. four ensemble attacks against FP + Q1 + Q2 -------------------------------------------------------
    t0 = time.perf_counter()
    trio = MajorityVote([by_label[n] for n in ("FP-s0", "Q1-s0", "Q2-s0")], seed=0, names=["FP-s0", "Q1-s0", "Q2-s0"])
    sweep = robustness_sweep(trio, ATTACK_EPS, rules=RULE_NAMES, members_alone=False, **common)
    ens = sweep[sweep["model"] == "ensemble"].assign(rule=lambda d: d["rule"].map(RULE_LABELS))
    success = ens.pivot(index="eps", columns="rule", values="success_rate")[[RULE_LABELS[r] for r in RULE_NAMES]]
    success["A-GD / D-AG"] = success["A-GD"] / success["D-AG"]
    show(
        f"attack success against the FP+Q1+Q2 majority vote ({args.steps} steps, step {args.step_size}; "
        f"share of correctly classified images turned wrong, ties as expectation)",
        success,
    )
    accuracy = ens.pivot(index="eps", columns="rule", values="accuracy")[[RULE_LABELS[r] for r in RULE_NAMES]]
    show("accuracy under attack of the FP+Q1+Q2 majority vote", accuracy)
    members = sweep[sweep["model"] != "ensemble"].pivot_table(
        index=["rule", "eps"], columns="model", values="acc_on_ensemble_adv", sort=False
    )
    show("each member's accuracy on the images crafted against the ensemble (gradient domination)", members)
    print(f"(section 1: {time.perf_counter() - t0:.0f} s)")

    # -- 2. TREND choice for k = 3 from a PGD transfer run over the preset -----------------------------------
    t0 = time.perf_counter()
    pgd = PGD(eps=TRANSFER_EPS, steps=args.steps, step_size=args.step_size)
    transfer = run_transfer(models, pgd, limit=args.limit, cache=store, device=str(device))
    tm = transfer.matrix(averages=False)
    show(f"TM matrix, PGD eps {TRANSFER_EPS} over the preset (rows: source, columns: target)", tm, "{:.2f}")
    choices = {
        "free": select_ensembles(tm, 3, accuracies=accuracies, top=5),
        "FP-s0 required": select_ensembles(tm, 3, require=["FP-s0"], accuracies=accuracies, top=5),
        f"FP-s0 required, clean accuracy >= {MIN_ACC}": select_ensembles(
            tm, 3, require=["FP-s0"], min_acc=MIN_ACC, accuracies=accuracies, top=5
        ),
    }
    for name, ranked in choices.items():
        show(
            f"TREND, k = 3, {name} ({ranked.attrs['method']}, {ranked.attrs['candidates']} candidate sets)",
            ranked.drop(columns=["members"]),
        )
    print(f"(transfer run and selection: {time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    rows = []
    chosen = {f"TREND {name}": list(ranked.iloc[0]["members"]) for name, ranked in choices.items()}
    chosen.setdefault("FP+Q1+Q2 (paper)", ["FP-s0", "Q1-s0", "Q2-s0"])
    seen = set()
    for title, names in chosen.items():
        if tuple(names) in seen:
            continue
        seen.add(tuple(names))
        ensemble = MajorityVote([by_label[n] for n in names], seed=0, names=names)
        robust = robustness_sweep(ensemble, ROBUST_EPS, rules=["agd"], members_alone=True, **common)
        for r in robustness_ratios(robust).itertuples(index=False):
            rows.append(
                {
                    "ensemble": f"{title}: {' + '.join(names)}",
                    "eps": r.eps,
                    "member": r.member,
                    "ensemble_acc": r.ensemble_accuracy,
                    "member_acc": r.member_accuracy,
                    "x_more_robust": r.times_more_robust,
                }
            )
    show(
        "A-GD: accuracy under attack of each ensemble and of each member attacked alone",
        pd.DataFrame(rows).set_index(["ensemble", "eps", "member"]),
    )
    print(f"(robustness: {time.perf_counter() - t0:.0f} s)")

    # -- 3. TM(eps) fit from 4 eps, judged on 12 measured eps ------------------------------------------------
    t0 = time.perf_counter()
    fit_eps = default_fit_eps("digits")
    summary = []
    for source, target in PAIRS:
        try:
            result = fit_tm(
                by_label[source],
                by_label[target],
                fit_eps,
                eval_eps=MEASURED_EPS,
                attack=pgd,
                limit=args.limit,
                cache=store,
                device=str(device),
            )
        except TrendError as exc:
            print(f"\n## TM(eps) {source} -> {target}: no fit: {exc}")
            continue
        measured = result.measured.assign(tm_fit=result.curve.tm(result.measured["eps"].to_numpy(float)))
        show(
            f"TM(eps) {source} -> {target}: measured vs fitted (fit from eps {fit_eps})",
            measured.set_index("eps")[["f_ss", "f_st", "tm", "tm_fit", "used_in_fit"]],
            "{:.4f}",
        )
        for note in result.warnings:
            print(f"note: {note}")
        summary.append(
            {
                "pair": f"{source} -> {target}",
                **result.curve.params(),
                "measured_points": int(result.measured["tm"].notna().sum()),
                "rmse": result.rmse,
                "max_abs_error": result.max_abs_error,
            }
        )
    if summary:
        show(
            "TM(eps) fit: RMSE of fitted against measured TM (paper: < 0.05)",
            pd.DataFrame(summary).set_index("pair"),
            "{:.4f}",
        )
    print(f"(fits: {time.perf_counter() - t0:.0f} s)")
    print(
        f"\ntotal {time.perf_counter() - start:.0f} s on {device}, "
        f"{'all' if args.limit is None else args.limit} test images"
    )


if __name__ == "__main__":
    main()
