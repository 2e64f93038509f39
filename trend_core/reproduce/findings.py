"""Verdicts on the paper's eight findings, computed from a reproduction's stage results.

Each rule reads the numbers, states the test it applies (shown next to the verdict in the report) and returns
``held``, ``did not hold`` or ``not testable at this scale``. Nothing here is written by hand per run: change
the data and the verdict follows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

HELD, FAILED, UNTESTABLE = "held", "did not hold", "not testable at this scale"
VERDICTS = (HELD, FAILED, UNTESTABLE)
FAR_MORE = 1.5  # finding 1: "far more" = at least this many times the mean TM
SEED_STD_MAX = 10.0  # finding 2: seeds "barely" change transfer: std of transfer % over seed pairs, points
OPTIMIZER_GAP = 5.0  # finding 2: the optimizer "does": seed-pair transfer % minus cross-optimizer, points
ASYMMETRY_MIN = 2.0  # finding 2: |SGD -> Adam - Adam -> SGD| transfer %, points
SHARP_DROP = 0.5  # finding 4: TM into Q1/Q2/HT at most this share of TM into Q8/Q4
AGD_TOLERANCE = 0.01  # finding 6: A-GD success may trail another rule by this much (sampling noise)
RMSE_MAX = 0.05  # finding 8: the paper's 5%

CLAIMS = {
    1: "PGD transfers far more than CW (kappa 0) and DeepFool; CW with kappa 30 transfers much more than kappa 0, "
    "at larger L2/L-inf norms.",
    2: "Seeds barely change transferability; the optimizer does (SGD vs Adam), and transfer between SGD- and "
    "Adam-trained models is asymmetric.",
    3: "VGG sources transfer to ResNets more than the reverse; ResNets are the most exposed targets.",
    4: "Low-bit input quantization (Q1, Q2, HT) as target sharply lowers TM; Q-bits > 2 make good sources.",
    5: "Weight/activation quantization effects depend on dataset and architecture.",
    6: "A-GD >= D-AG and EMPIR-style at low eps; U-GD weakens with more members.",
    7: "Ensembles of low-TM members (FP-Q1-Q2, FP-Q1-Q2-HT) are more robust than any member alone.",
    8: "The TM(eps) fit from 4 points predicts 20 measured points with RMSE < 5%.",
}
PAPER = {
    1: "CIFAR-10 ResNet18 between seeds: PGD 89.9% transferred (8166 of 9085), mean L2 1.409, L-inf 0.031; "
    "CW kappa 0 and DeepFool far lower; kappa 30 higher than kappa 0 at larger norms.",
    2: "Small std over 10 seeds; SGD <-> Adam transfer lower and asymmetric.",
    3: "VGG -> ResNet higher than ResNet -> VGG; ResNet columns have the highest averages.",
    4: "Q1, Q2, HT columns sharply lower; Q8..Q4 rows high.",
    5: "Differs between CIFAR-10, CIFAR-100 and ImageNet and between architectures.",
    6: "A-GD up to 1.56x the attack success of D-AG / EMPIR at small eps, meeting near eps 0.03; U-GD weakens "
    "as members are added.",
    7: "FP-Q1-Q2 at eps 0.01 under A-GD: 1.30x Q1, 1.36x Q2, 8.43x FP (CIFAR-10).",
    8: "RMSE < 5%; mean difference 0.055 (CIFAR-10 ResNet18).",
}


def finding(
    number: int, verdict: str, rule: str, measured: str, numbers: dict | None = None, parts: list | None = None
) -> dict:
    assert verdict in VERDICTS
    return {
        "finding": number,
        "claim": CLAIMS[number],
        "paper": PAPER[number],
        "measured": measured,
        "verdict": verdict,
        "rule": rule,
        "numbers": _clean(numbers or {}),
        "parts": parts or [],
    }


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else round(float(obj), 6)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _done(stages: dict, name: str) -> dict | None:
    stage = stages.get(name) or {}
    return stage if stage.get("status") == "done" else None


def _why(stages: dict, name: str) -> str:
    return str((stages.get(name) or {}).get("status", "not run"))


def _pct(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.1f}%"


# ----------------------------------------------------------------------------- the eight rules
def finding_1(stages: dict) -> dict:
    rule = (
        f"held if PGD's mean transfer % is at least {FAR_MORE}x both CW(k=0)'s and DeepFool's, CW(k=30)'s "
        "exceeds CW(k=0)'s, and CW(k=30)'s mean L2 exceeds CW(k=0)'s (all off-diagonal pairs of the "
        "seed/optimizer models)"
    )
    stage = _done(stages, "attacks")
    if stage is None:
        return finding(1, UNTESTABLE, rule, f"transfer stage {_why(stages, 'attacks')}")
    pairs = stage["pairs"]
    off = pairs[pairs["source"] != pairs["target"]]
    stats = {}
    for attack, group in off.groupby("attack"):
        stats[attack] = {
            "transfer_pct": 100 * float(group["tm"].mean()),
            "l2": float(group["mean_l2"].mean()),
            "linf": float(group["mean_linf"].mean()),
        }
    needed = ("PGD", "CW k=0", "CW k=30", "DeepFool")
    empty = [a for a in needed if a not in stats or not math.isfinite(stats[a]["transfer_pct"])]
    if empty:
        why = f"{' and '.join(empty)} generated no adversarial image"
        if "CW k=30" in empty:  # success needs another class's logit 30 above the true one's
            why += " (CW k=30 succeeds only where another class's logit exceeds the true one's by 30)"
        return finding(1, UNTESTABLE, rule, why, stats)
    pgd, cw0, cw30, df = (stats[a] for a in needed)
    held = (
        pgd["transfer_pct"] >= FAR_MORE * cw0["transfer_pct"]
        and pgd["transfer_pct"] >= FAR_MORE * df["transfer_pct"]
        and cw30["transfer_pct"] > cw0["transfer_pct"]
        and cw30["l2"] > cw0["l2"]
    )
    measured = (
        f"transfer %: PGD {_pct(pgd['transfer_pct'])}, CW k=0 {_pct(cw0['transfer_pct'])}, CW k=30 "
        f"{_pct(cw30['transfer_pct'])}, DeepFool {_pct(df['transfer_pct'])}; mean L2 CW k=0 {cw0['l2']:.3f}, "
        f"k=30 {cw30['l2']:.3f}; PGD L2 {pgd['l2']:.3f}, L-inf {pgd['linf']:.3f}"
    )
    return finding(1, HELD if held else FAILED, rule, measured, stats)


def finding_2(stages: dict) -> dict:
    rule = (
        f"held if, under PGD, the std of transfer % over seed pairs is at most {SEED_STD_MAX:g} points, the "
        f"seed pairs' mean transfer % exceeds the SGD<->Adam pairs' by at least {OPTIMIZER_GAP:g} points, and "
        f"|SGD->Adam - Adam->SGD| is at least {ASYMMETRY_MIN:g} points"
    )
    stage = _done(stages, "attacks")
    if stage is None:
        return finding(2, UNTESTABLE, rule, f"transfer stage {_why(stages, 'attacks')}")
    table = stage["table"]
    pgd = table[table["attack"] == "PGD"].set_index("relation")
    if (
        not {"between seeds (SGD)", "SGD -> Adam", "Adam -> SGD"} <= set(pgd.index)
        or pgd.loc["between seeds (SGD)", "pairs"] < 2
    ):
        return finding(2, UNTESTABLE, rule, "needs at least two seed pairs and an Adam-trained model")
    seed_mean = float(pgd.loc["between seeds (SGD)", "transfer_pct_mean"])
    seed_std = float(pgd.loc["between seeds (SGD)", "transfer_pct_std"])
    to_adam = float(pgd.loc["SGD -> Adam", "transfer_pct_mean"])
    from_adam = float(pgd.loc["Adam -> SGD", "transfer_pct_mean"])
    cross = (to_adam + from_adam) / 2
    numbers = {
        "seed_mean_pct": seed_mean,
        "seed_std_pct": seed_std,
        "sgd_to_adam_pct": to_adam,
        "adam_to_sgd_pct": from_adam,
    }
    held = seed_std <= SEED_STD_MAX and seed_mean - cross >= OPTIMIZER_GAP and abs(to_adam - from_adam) >= ASYMMETRY_MIN
    measured = (
        f"seeds {_pct(seed_mean)} (std {seed_std:.1f} points); SGD->Adam {_pct(to_adam)}, Adam->SGD {_pct(from_adam)}"
    )
    return finding(2, HELD if held else FAILED, rule, measured, numbers)


def _matrix(stages: dict):
    # local: loads torch only when needed (keeps start-up fast)
    from .stages import tm_matrix

    stage = _done(stages, "matrices")
    return (None, None) if stage is None else (tm_matrix(stage["pairs"], stage["labels"]), stage["roles"])


def _label(roles: dict, role: str) -> str | None:
    return next((label for label, r in roles.items() if r == role), None)


def finding_3(stages: dict) -> dict:
    rule = (
        "held if TM(VGG -> ResNet FP) exceeds TM(ResNet FP -> VGG) and the ResNet's column average (TM into it "
        "from the other models) is at least the VGG's"
    )
    tm, roles = _matrix(stages)
    if tm is None or _label(roles, "VGG") is None:
        return finding(3, UNTESTABLE, rule, "needs a VGG and a ResNet in the TM matrix")
    vgg, rn = _label(roles, "VGG"), _label(roles, "FP")
    off = tm.where(~np.eye(len(tm), dtype=bool))
    col = off.mean(axis=0)
    numbers = {
        "vgg_to_resnet": float(tm.at[vgg, rn]),
        "resnet_to_vgg": float(tm.at[rn, vgg]),
        "resnet_col_avg": float(col[rn]),
        "vgg_col_avg": float(col[vgg]),
    }
    if any(not math.isfinite(v) for v in numbers.values()):
        return finding(3, UNTESTABLE, rule, "a TM is undefined (no adversarial image generated)", numbers)
    held = numbers["vgg_to_resnet"] > numbers["resnet_to_vgg"] and numbers["resnet_col_avg"] >= numbers["vgg_col_avg"]
    measured = (
        f"VGG->ResNet {numbers['vgg_to_resnet']:.3f}, ResNet->VGG {numbers['resnet_to_vgg']:.3f}; column "
        f"average ResNet {numbers['resnet_col_avg']:.3f}, VGG {numbers['vgg_col_avg']:.3f}"
    )
    return finding(3, HELD if held else FAILED, rule, measured, numbers)


def finding_4(stages: dict) -> dict:
    rule = (
        f"held if the mean TM from FP into Q1, Q2, HT is at most {SHARP_DROP:g}x the mean TM from FP into Q8, Q4, "
        "and the mean row average of Q8, Q4 (as sources) is at least that of Q1, Q2, HT"
    )
    tm, roles = _matrix(stages)
    low = [x for x in (_label(roles, r) for r in ("Q1", "Q2", "HT")) if x] if tm is not None else []
    high = [x for x in (_label(roles, r) for r in ("Q8", "Q4")) if x] if tm is not None else []
    if tm is None or not low or not high:
        return finding(4, UNTESTABLE, rule, "needs FP, a Q8 or Q4 and a Q1, Q2 or HT model in the TM matrix")
    fp = _label(roles, "FP")
    off = tm.where(~np.eye(len(tm), dtype=bool))
    row = off.mean(axis=1)
    numbers = {
        "fp_to_low": float(tm.loc[fp, low].mean()),
        "fp_to_high": float(tm.loc[fp, high].mean()),
        "row_avg_high": float(row[high].mean()),
        "row_avg_low": float(row[low].mean()),
    }
    if any(not math.isfinite(v) for v in numbers.values()):
        return finding(4, UNTESTABLE, rule, "a TM is undefined (no adversarial image generated)", numbers)
    held = (
        numbers["fp_to_low"] <= SHARP_DROP * numbers["fp_to_high"] and numbers["row_avg_high"] >= numbers["row_avg_low"]
    )
    measured = (
        f"FP into {'/'.join(low)} {numbers['fp_to_low']:.3f} vs into {'/'.join(high)} "
        f"{numbers['fp_to_high']:.3f}; row average {'/'.join(high)} {numbers['row_avg_high']:.3f}, "
        f"{'/'.join(low)} {numbers['row_avg_low']:.3f}"
    )
    return finding(4, HELD if held else FAILED, rule, measured, numbers)


def finding_5(stages: dict) -> dict:
    rule = (
        "testable only with weight/activation-quantized models on at least two datasets or architectures; then "
        "held if the sign of (TM from FP into W/A models - TM from FP into FP seeds) differs between them"
    )
    tm, roles = _matrix(stages)
    if tm is None:
        return finding(5, UNTESTABLE, rule, f"matrix stage {_why(stages, 'matrices')}")
    fp = _label(roles, "FP")
    wa = [x for x in (_label(roles, r) for r in ("W2", "A2")) if x]
    if not wa:
        return finding(5, UNTESTABLE, rule, "no weight/activation-quantized models at this scale")
    numbers = {f"fp_to_{w}": float(tm.at[fp, w]) for w in wa}
    measured = (
        ", ".join(f"FP->{w} {tm.at[fp, w]:.3f}" for w in wa)
        + "; one dataset and one architecture with W/A models in this run"
    )
    return finding(5, UNTESTABLE, rule, measured, numbers)


def finding_6(stages: dict) -> dict:
    rule = (
        f"held if, at the lowest eps on the 3-member ensemble, A-GD's attack success is at least D-AG's and "
        f"EMPIR's minus {AGD_TOLERANCE:g}, and U-GD's success averaged over eps is lower on the 4-member "
        "ensemble than on the 3-member one"
    )
    stage = _done(stages, "ensembles")
    if stage is None:
        return finding(6, UNTESTABLE, rule, f"ensemble stage {_why(stages, 'ensembles')}")
    sweep = stage["sweep"]
    small = sweep[sweep["size"] == sweep["size"].min()]
    low = small[np.isclose(small["eps"], small["eps"].min())].set_index("rule")["success_rate"]
    numbers = {f"{r}_success_low_eps": float(low[r]) for r in ("agd", "dag", "empir", "ugd") if r in low}
    agd_ok = low["agd"] >= low["dag"] - AGD_TOLERANCE and low["agd"] >= low["empir"] - AGD_TOLERANCE
    measured = (
        f"at eps {small['eps'].min():g}: A-GD {low['agd']:.1%}, D-AG {low['dag']:.1%}, EMPIR "
        f"{low['empir']:.1%}, U-GD {low['ugd']:.1%}"
    )
    sizes = sorted(sweep["size"].unique())
    parts = [{"part": "A-GD >= D-AG, EMPIR at low eps", "verdict": HELD if agd_ok else FAILED}]
    if len(sizes) < 2:
        parts.append({"part": "U-GD weakens with more members", "verdict": UNTESTABLE})
        verdict = UNTESTABLE if agd_ok else FAILED
        return finding(
            6, verdict, rule, measured + "; only one ensemble size, so U-GD's trend is untested", numbers, parts
        )
    ugd = sweep[sweep["rule"] == "ugd"].groupby("size")["success_rate"].mean()
    numbers.update({f"ugd_mean_success_{int(k)}": float(v) for k, v in ugd.items()})
    ugd_ok = ugd[sizes[-1]] < ugd[sizes[0]]
    parts.append({"part": "U-GD weakens with more members", "verdict": HELD if ugd_ok else FAILED})
    measured += f"; U-GD mean success {ugd[sizes[0]]:.1%} ({sizes[0]} members) vs {ugd[sizes[-1]]:.1%} ({sizes[-1]})"
    return finding(6, HELD if agd_ok and ugd_ok else FAILED, rule, measured, numbers, parts)


def finding_7(stages: dict) -> dict:
    rule = (
        "held if every TREND ensemble's accuracy under A-GD exceeds each of its members' (attacked alone), and, "
        "where the audit ran, its worst-case accuracy over the audit's battery exceeds each member's; the "
        "verdict is 'did not hold' if any tested part fails"
    )
    stage = _done(stages, "trend")
    if stage is None:
        return finding(7, UNTESTABLE, rule, f"TREND stage {_why(stages, 'trend')}")
    comparison = stage["comparison"]
    parts, texts, numbers = [], [], {}
    agd_ok = True
    for ensemble, group in comparison.groupby("ensemble", sort=False):
        ens = float(group.loc[group["model"] == "ensemble", "accuracy"].iloc[0])
        members = group[group["model"] != "ensemble"]
        best = float(members["accuracy"].max())
        agd_ok &= ens > best
        numbers[ensemble] = {"ensemble": ens, **{m: float(a) for m, a in zip(members["model"], members["accuracy"])}}
        texts.append(f"{ensemble}: {ens:.1%} under A-GD vs best member {best:.1%}")
    parts.append({"part": f"under A-GD at eps {stage['eps']:g}", "verdict": HELD if agd_ok else FAILED})
    audit = _done(stages, "audit")
    if audit is None:
        parts.append({"part": "under the audit's worst case", "verdict": UNTESTABLE, "note": _why(stages, "audit")})
        texts.append(f"audit part not testable ({_why(stages, 'audit')})")
        verdict = HELD if agd_ok else FAILED
    else:
        worst = audit["worst_case"].set_index("model")["worst_case_accuracy"]
        audit_ok = True
        for ensemble in comparison["ensemble"].unique():
            members = ensemble.split(" + ")
            audit_ok &= float(worst[ensemble]) > max(float(worst[m]) for m in members)
            texts.append(
                f"worst case {ensemble} {float(worst[ensemble]):.1%} vs best member "
                f"{max(float(worst[m]) for m in members):.1%}"
            )
        numbers["audit_worst_case"] = {k: float(v) for k, v in worst.items()}
        parts.append({"part": "under the audit's worst case", "verdict": HELD if audit_ok else FAILED})
        verdict = HELD if agd_ok and audit_ok else FAILED
    return finding(7, verdict, rule, "; ".join(texts), numbers, parts)


def finding_8(stages: dict) -> dict:
    rule = f"held if the RMSE of the 4-point fit's TM against every measured point is below {RMSE_MAX:g} for every pair"
    stage = _done(stages, "fit")
    if stage is None:
        return finding(8, UNTESTABLE, rule, f"fit stage {_why(stages, 'fit')}")
    summary = stage["summary"]
    rmse = {str(p): float(r) for p, r in zip(summary["pair"], summary["rmse"])}
    points = {str(p): int(n) for p, n in zip(summary["pair"], summary["measured_points"])}
    if not rmse or any(not math.isfinite(v) for v in rmse.values()):
        return finding(8, UNTESTABLE, rule, "TM undefined at the measured points", {"rmse": rmse})
    held = all(v < RMSE_MAX for v in rmse.values())
    measured = "; ".join(f"{p}: RMSE {v:.3f} over {points[p]} points" for p, v in rmse.items())
    return finding(8, HELD if held else FAILED, rule, measured, {"rmse": rmse})


RULES: tuple[Callable[[dict], dict], ...] = (
    finding_1,
    finding_2,
    finding_3,
    finding_4,
    finding_5,
    finding_6,
    finding_7,
    finding_8,
)


def evaluate_findings(stages: dict) -> list[dict]:
    """The eight findings with verdicts, in order."""
    return [rule(stages) for rule in RULES]


def findings_frame(findings: list[dict]) -> pd.DataFrame:
    """The findings table: number, claim, measured, paper, verdict, rule."""
    return pd.DataFrame(
        [{k: f[k] for k in ("finding", "claim", "measured", "paper", "verdict", "rule")} for f in findings]
    )
