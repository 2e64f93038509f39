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

from trend_core import stats
from trend_core.reproduce.judging import (
    FAILED,
    HELD,
    INCONCLUSIVE,
    UNTESTABLE,
    TransferSample,
    conclude,
    estimate_text,
    finding,
    judge,
    matrix_sample,
    minimum_of,
    number_record,
    percent_text,
    role_label,
    stage_result,
    why_missing,
)
from trend_core.stats import Estimate

FAR_MORE = 1.5  # finding 1: "far more" = at least this many times the mean TM
SEED_STD_MAX = 10.0  # finding 2: seeds "barely" change transfer: std of transfer % over seed pairs, points
OPTIMIZER_GAP = 5.0  # finding 2: the optimizer "does": seed-pair transfer % minus cross-optimizer, points
ASYMMETRY_MIN = 2.0  # finding 2: |SGD -> Adam - Adam -> SGD| transfer %, points
SHARP_DROP = 0.5  # finding 4: TM into Q1/Q2/HT at most this share of TM into Q8/Q4
AGD_TOLERANCE = 0.01  # finding 6: A-GD success may trail another rule by this much (sampling noise)
RMSE_MAX = 0.05  # finding 8: the paper's 5%
FIT_DRAWS = 200  # finding 8 refits both curves per resample: fewer resamples than the closed-form findings


# ----------------------------------------------------------------------------- the eight rules
def finding_1(stages: dict) -> dict:
    rule = (
        f"held if the intervals put PGD's mean transfer % above {FAR_MORE}x both CW(k=0)'s and DeepFool's "
        "(PGD - 1.5 x other > 0), CW(k=30)'s transfer % above CW(k=0)'s and CW(k=30)'s mean L2 above CW(k=0)'s "
        "(all off-diagonal pairs of the seed/optimizer models, paired over the same test images)"
    )
    stage = stage_result(stages, "attacks")
    if stage is None or "images" not in stage:
        return finding(1, UNTESTABLE, rule, f"transfer stage {why_missing(stages, 'attacks')}")
    pairs = stage["pairs"]
    labels = list(dict.fromkeys(pairs["source"]))
    off = [(s, t) for s in labels for t in labels if s != t]
    weights = stats.resample_weights(len(next(iter(stage["images"].values()))))
    transfer, l2 = {}, {}
    for attack, images in stage["images"].items():
        sample = TransferSample(images, weights)
        transfer[attack] = sample.mean_tm(off) * 100
        l2[attack] = Estimate.mean_of([sample.mean_l2(s, t) for s, t in off])
    numbers = {f"{a}_transfer_pct": number_record(e) for a, e in transfer.items()}
    numbers.update({f"{a}_mean_l2": number_record(e) for a, e in l2.items()})
    needed = ("PGD", "CW k=0", "CW k=30", "DeepFool")
    empty = [a for a in needed if a not in transfer or not math.isfinite(transfer[a].value)]
    if empty:
        why = f"{' and '.join(empty)} generated no adversarial image"
        if "CW k=30" in empty:  # success needs another class's logit 30 above the true one's
            why += " (CW k=30 succeeds only where another class's logit exceeds the true one's by 30)"
        return finding(1, UNTESTABLE, rule, why, numbers)
    pgd, cw0, cw30, df = (transfer[a] for a in needed)
    n = len(weights[0])
    parts = [
        judge(f"PGD - {FAR_MORE} x CW(k=0) transfer %", pgd - cw0 * FAR_MORE, 0.0, "above", n),
        judge(f"PGD - {FAR_MORE} x DeepFool transfer %", pgd - df * FAR_MORE, 0.0, "above", n),
        judge("CW(k=30) - CW(k=0) transfer %", cw30 - cw0, 0.0, "above", n),
        judge("CW(k=30) - CW(k=0) mean L2", l2["CW k=30"] - l2["CW k=0"], 0.0, "above", n),
    ]
    measured = (
        f"transfer %: PGD {estimate_text(pgd, fmt='.1f')}, CW k=0 {estimate_text(cw0, fmt='.1f')}, CW k=30 "
        f"{estimate_text(cw30, fmt='.1f')}, DeepFool {estimate_text(df, fmt='.1f')}; mean L2 CW k=0 {estimate_text(l2['CW k=0'])}, "
        f"k=30 {estimate_text(l2['CW k=30'])}; PGD L2 {estimate_text(l2['PGD'])}"
    )
    return conclude(1, rule, measured, numbers, parts)


def _group_mean(pair_estimates: dict, pair_weights: dict) -> Estimate:
    """Weighted mean of per-pair estimates, with per-resample weights (the seed bootstrap's)."""
    keys = list(pair_estimates)
    w = np.vstack([pair_weights[k] for k in keys])  # pairs x draws
    value = float(np.mean([pair_estimates[k].value for k in keys]))
    reps = np.vstack([pair_estimates[k].replicates for k in keys])
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(w * np.isfinite(reps), axis=0)
        mean = np.nansum(w * np.nan_to_num(reps), axis=0) / np.where(total > 0, total, np.nan)
    return Estimate(value, mean)


def _group_std(pair_estimates: dict, pair_weights: dict) -> Estimate:
    """Weighted sample std of per-pair estimates (the point value is the plain sample std over pairs)."""
    keys = list(pair_estimates)
    values = np.array([pair_estimates[k].value for k in keys])
    value = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    w = np.vstack([pair_weights[k] for k in keys])
    reps = np.vstack([pair_estimates[k].replicates for k in keys])
    mean = _group_mean(pair_estimates, pair_weights).replicates
    with np.errstate(invalid="ignore", divide="ignore"):
        total = w.sum(axis=0)
        var = (w * (reps - mean) ** 2).sum(axis=0) / np.where(total > 0, total, np.nan)
        correction = len(keys) / (len(keys) - 1) if len(keys) > 1 else np.nan
        reps_std = np.sqrt(var * correction)
    distinct = (w > 0).sum(axis=0)
    return Estimate(value, np.where(distinct > 1, reps_std, np.nan))


def finding_2(stages: dict) -> dict:
    rule = (
        f"held if, under PGD, the interval of the std of transfer % over seed pairs lies below {SEED_STD_MAX:g} "
        f"points, that of (seed pairs' mean transfer % - SGD<->Adam's) above {OPTIMIZER_GAP:g} points, and that of "
        f"|SGD->Adam - Adam->SGD| above {ASYMMETRY_MIN:g} points (bootstrap over test images and over seeds)"
    )
    stage = stage_result(stages, "attacks")
    if stage is None or "images" not in stage or "PGD" not in stage["images"]:
        return finding(2, UNTESTABLE, rule, f"transfer stage {why_missing(stages, 'attacks')}")
    relations = stage.get("relations", {})
    if not {"between seeds (SGD)", "SGD -> Adam", "Adam -> SGD"} <= set(relations):
        return finding(2, UNTESTABLE, rule, "needs at least two seed pairs and an Adam-trained model")
    sgd = list(relations["between seeds (SGD)"]["sources"])
    adam = relations["SGD -> Adam"]["targets"][0]
    if len(sgd) < 2:
        return finding(2, UNTESTABLE, rule, "needs at least two seed pairs and an Adam-trained model")
    sample = TransferSample(stage["images"]["PGD"])
    seeds = stats.resample_groups(len(sgd), len(sample.weights)).T  # models x draws
    seed_pairs = {(a, b): sample.tm(sgd[a], sgd[b]) * 100 for a in range(len(sgd)) for b in range(len(sgd)) if a != b}
    seed_w = {(a, b): seeds[a] * seeds[b] for a, b in seed_pairs}
    seed_mean = _group_mean(seed_pairs, seed_w)
    seed_std = _group_std(seed_pairs, seed_w)
    to_adam = _group_mean({a: sample.tm(sgd[a], adam) * 100 for a in range(len(sgd))}, dict(enumerate(seeds)))
    from_adam = _group_mean({a: sample.tm(adam, sgd[a]) * 100 for a in range(len(sgd))}, dict(enumerate(seeds)))
    cross = (to_adam + from_adam) * 0.5
    gap, asym = seed_mean - cross, abs(to_adam - from_adam)
    numbers = {
        "seed_mean_pct": number_record(seed_mean),
        "seed_std_pct": number_record(seed_std),
        "sgd_to_adam_pct": number_record(to_adam),
        "adam_to_sgd_pct": number_record(from_adam),
        "optimizer_gap_pct": number_record(gap),
        "asymmetry_pct": number_record(asym),
    }
    n = sample.n
    parts = [
        judge("std of transfer % over seed pairs", seed_std, SEED_STD_MAX, "below", n),
        judge("seed pairs - SGD<->Adam transfer %", gap, OPTIMIZER_GAP, "above", n),
        judge("|SGD->Adam - Adam->SGD| transfer %", asym, ASYMMETRY_MIN, "above", n),
    ]
    measured = (
        f"seeds {estimate_text(seed_mean, fmt='.1f')}% (std {estimate_text(seed_std, fmt='.1f')} points); SGD->Adam "
        f"{estimate_text(to_adam, fmt='.1f')}%, Adam->SGD {estimate_text(from_adam, fmt='.1f')}%; gap {estimate_text(gap, fmt='.1f')}, "
        f"asymmetry {estimate_text(asym, fmt='.1f')} points"
    )
    return conclude(2, rule, measured, numbers, parts)


def finding_3(stages: dict) -> dict:
    rule = (
        "held if the interval of TM(VGG -> ResNet FP) - TM(ResNet FP -> VGG) lies above 0 and that of the "
        "ResNet's column average (TM into it from the other models) minus the VGG's lies above 0"
    )
    sample, roles, labels = matrix_sample(stages)
    if sample is None or role_label(roles, "VGG") is None:
        return finding(3, UNTESTABLE, rule, "needs a VGG and a ResNet in the TM matrix")
    vgg, rn = str(role_label(roles, "VGG")), str(role_label(roles, "FP"))
    v2r, r2v = sample.tm(vgg, rn), sample.tm(rn, vgg)
    col_rn, col_vgg = sample.col_avg(labels, rn), sample.col_avg(labels, vgg)
    numbers = {
        "vgg_to_resnet": number_record(v2r),
        "resnet_to_vgg": number_record(r2v),
        "resnet_col_avg": number_record(col_rn),
        "vgg_col_avg": number_record(col_vgg),
    }
    if any(not math.isfinite(e.value) for e in (v2r, r2v, col_rn, col_vgg)):
        return finding(3, UNTESTABLE, rule, "a TM is undefined (no adversarial image generated)", numbers)
    parts = [
        judge("TM(VGG -> ResNet) - TM(ResNet -> VGG)", v2r - r2v, 0.0, "above", sample.n),
        judge("column average ResNet - VGG", col_rn - col_vgg, 0.0, "above", sample.n),
    ]
    measured = (
        f"VGG->ResNet {estimate_text(v2r)}, ResNet->VGG {estimate_text(r2v)}; column average ResNet {estimate_text(col_rn)}, "
        f"VGG {estimate_text(col_vgg)}"
    )
    return conclude(3, rule, measured, numbers, parts)


def finding_4(stages: dict) -> dict:
    rule = (
        f"held if the interval of (mean TM from FP into Q1, Q2, HT) - {SHARP_DROP:g} x (mean TM from FP into Q8, "
        "Q4) lies below 0 and that of (mean row average of Q8, Q4) - (mean row average of Q1, Q2, HT) above 0"
    )
    sample, roles, labels = matrix_sample(stages)
    low = [x for x in (role_label(roles, r) for r in ("Q1", "Q2", "HT")) if x]
    high = [x for x in (role_label(roles, r) for r in ("Q8", "Q4")) if x]
    if sample is None or not low or not high:
        return finding(4, UNTESTABLE, rule, "needs FP, a Q8 or Q4 and a Q1, Q2 or HT model in the TM matrix")
    fp = role_label(roles, "FP")
    fp_low, fp_high = sample.mean_tm([(fp, t) for t in low]), sample.mean_tm([(fp, t) for t in high])
    row_high = Estimate.mean_of([sample.row_avg(labels, s) for s in high])
    row_low = Estimate.mean_of([sample.row_avg(labels, s) for s in low])
    numbers = {
        "fp_to_low": number_record(fp_low),
        "fp_to_high": number_record(fp_high),
        "row_avg_high": number_record(row_high),
        "row_avg_low": number_record(row_low),
    }
    if any(not math.isfinite(e.value) for e in (fp_low, fp_high, row_high, row_low)):
        return finding(4, UNTESTABLE, rule, "a TM is undefined (no adversarial image generated)", numbers)
    parts = [
        judge(f"TM FP->low - {SHARP_DROP:g} x TM FP->high", fp_low - fp_high * SHARP_DROP, 0.0, "below", sample.n),
        judge("row average high - low bits", row_high - row_low, 0.0, "above", sample.n),
    ]
    measured = (
        f"FP into {'/'.join(low)} {estimate_text(fp_low)} vs into {'/'.join(high)} {estimate_text(fp_high)}; row average "
        f"{'/'.join(high)} {estimate_text(row_high)}, {'/'.join(low)} {estimate_text(row_low)}"
    )
    return conclude(4, rule, measured, numbers, parts)


def wa_effect(stages: dict) -> tuple[Estimate | None, str]:
    """TM from FP into its weight/activation-quantized versions minus TM from FP into its other seeds, on one
    dataset's matrix (None with the reason when the matrix lacks them)."""
    sample, roles, _ = matrix_sample(stages)
    if sample is None:
        return None, f"matrix stage {why_missing(stages, 'matrices')}"
    fp = role_label(roles, "FP")
    wa = [x for x in (role_label(roles, r) for r in ("W2", "A2")) if x]
    seeds = [x for x in (role_label(roles, r) for r in ("FP-s1", "FP-s2")) if x]
    if not wa or not seeds:
        return None, "no weight/activation-quantized models or no second seed at this scale"
    return sample.mean_tm([(fp, t) for t in wa]) - sample.mean_tm([(fp, t) for t in seeds]), ""


def finding_5(stages: dict, others: dict | None = None, dataset: str = "this dataset") -> dict:
    rule = (
        "testable with weight/activation-quantized models on at least two datasets; the effect is TM from FP into "
        "W2/A2 minus TM from FP into FP's other seeds, per dataset; held if one dataset's interval lies above 0 and "
        "another's below 0 (the effect's sign depends on the dataset), did not hold if every interval lies on the "
        "same side of 0"
    )
    datasets = {dataset: stages, **(others or {})}
    effects, reasons = {}, []
    for name, stage_set in datasets.items():
        effect, why = wa_effect(stage_set)
        if effect is None:
            reasons.append(f"{name}: {why}")
        else:
            effects[name] = effect
    numbers = {f"{name}_wa_minus_seed_tm": number_record(e) for name, e in effects.items()}
    measured = "; ".join(f"{name}: TM(FP->W/A) - TM(FP->seeds) {estimate_text(e)}" for name, e in effects.items())
    if len(effects) < 2:
        why = "one dataset with W/A models in this run" + (f" ({'; '.join(reasons)})" if reasons else "")
        return finding(5, UNTESTABLE, rule, (measured + "; " if measured else "") + why, numbers)
    intervals = {name: e.interval() for name, e in effects.items()}
    above = [n for n, iv in intervals.items() if iv.low > 0]
    below = [n for n, iv in intervals.items() if iv.high < 0]
    parts = [
        judge(f"{name}: TM(FP->W/A) - TM(FP->seeds)", e, 0.0, "above", len(datasets[name]["matrices"]["images"]))
        for name, e in effects.items()
    ]
    if above and below:
        verdict = HELD
    elif len(above) == len(intervals) or len(below) == len(intervals):
        verdict = FAILED
    else:
        verdict = INCONCLUSIVE
    return finding(5, verdict, rule, measured, numbers, parts)


def finding_6(stages: dict) -> dict:
    rule = (
        f"held if, at the lowest eps on the 3-member ensemble, the intervals of A-GD's attack success minus D-AG's "
        f"and minus EMPIR's lie above -{AGD_TOLERANCE:g}, and that of U-GD's success averaged over eps on the "
        "4-member ensemble minus on the 3-member one lies below 0 (paired over the same test images)"
    )
    stage = stage_result(stages, "ensembles")
    if stage is None or "images" not in stage:
        return finding(6, UNTESTABLE, rule, f"ensemble stage {why_missing(stages, 'ensembles')}")
    sweep = stage["sweep"]
    images = stage["images"]
    weights = stats.resample_weights(len(next(iter(images.values()))))
    n = len(weights[0])

    def success(ensemble: str, rule_name: str, eps: float) -> Estimate:
        frame = images[ensemble]
        clean = frame["clean:ensemble"].to_numpy(float)
        attacked = frame[f"{rule_name}@{eps:g}:ensemble"].to_numpy(float)
        return Estimate.ratio_of(weights, clean * (1 - attacked), clean)

    sizes = sorted(sweep["size"].unique())
    small = str(sweep.loc[sweep["size"] == sizes[0], "ensemble"].iloc[0])
    low_eps = float(sweep.loc[sweep["size"] == sizes[0], "eps"].min())
    low = {r: success(small, r, low_eps) for r in ("agd", "dag", "empir", "ugd")}
    numbers = {f"{r}_success_low_eps": number_record(e) for r, e in low.items()}
    parts = [
        judge("A-GD - D-AG success at the lowest eps", low["agd"] - low["dag"], -AGD_TOLERANCE, "above", n),
        judge("A-GD - EMPIR success at the lowest eps", low["agd"] - low["empir"], -AGD_TOLERANCE, "above", n),
    ]
    measured = (
        f"at eps {low_eps:g}: A-GD {percent_text(low['agd'])}, D-AG {percent_text(low['dag'])}, EMPIR {percent_text(low['empir'])}, "
        f"U-GD {percent_text(low['ugd'])}"
    )
    if len(sizes) < 2:
        parts.append({"part": "U-GD weakens with more members", "verdict": UNTESTABLE})
        return conclude(6, rule, measured + "; only one ensemble size, so U-GD's trend is untested", numbers, parts)
    eps_all = sorted(sweep["eps"].unique())
    ugd = {}
    for size in (sizes[0], sizes[-1]):
        ensemble = str(sweep.loc[sweep["size"] == size, "ensemble"].iloc[0])
        ugd[size] = Estimate.mean_of([success(ensemble, "ugd", float(e)) for e in eps_all])
        numbers[f"ugd_mean_success_{int(size)}"] = number_record(ugd[size])
    parts.append(judge("U-GD success, more members - fewer", ugd[sizes[-1]] - ugd[sizes[0]], 0.0, "below", n))
    measured += f"; U-GD mean success {percent_text(ugd[sizes[0]])} ({sizes[0]} members) vs {percent_text(ugd[sizes[-1]])} ({sizes[-1]})"
    return conclude(6, rule, measured, numbers, parts)


def _margin_over_members(frame: pd.DataFrame, ensemble_column: str, members: list[str], weights) -> tuple:
    """The ensemble's accuracy minus each member's, per image and resample; the smallest margin and its member."""
    ones = np.ones(len(frame))
    ens = Estimate.ratio_of(weights, frame[ensemble_column].to_numpy(float), ones)
    margins = {m: ens - Estimate.ratio_of(weights, frame[m].to_numpy(float), ones) for m in members}
    best = min(margins, key=lambda m: margins[m].value)
    return ens, minimum_of(list(margins.values())), best, margins


def finding_7(stages: dict) -> dict:
    rule = (
        "held if, for every TREND ensemble, the interval of its accuracy under A-GD minus its best member's (each "
        "member attacked alone) lies above 0 and, where the audit ran, so does that of its worst-case accuracy "
        "over the audit's battery minus the best member's; did not hold if any such interval lies below 0"
    )
    stage = stage_result(stages, "trend")
    if stage is None or "images" not in stage:
        return finding(7, UNTESTABLE, rule, f"TREND stage {why_missing(stages, 'trend')}")
    parts, texts, numbers = [], [], {}
    n = len(next(iter(stage["images"].values())))
    weights = stats.resample_weights(n)
    for ensemble, frame in stage["images"].items():
        members = [c for c in frame.columns if c != "ensemble"]
        ens, margin, best, margins = _margin_over_members(frame, "ensemble", members, weights)
        numbers[ensemble] = {
            "ensemble": number_record(ens),
            **{f"minus_{m}": number_record(e) for m, e in margins.items()},
        }
        parts.append(judge(f"{ensemble} under A-GD minus its best member ({best})", margin, 0.0, "above", n))
        texts.append(
            f"{ensemble}: {percent_text(ens)} under A-GD; minus its best member {best}: {estimate_text(margin * 100, fmt='.1f')} points"
        )
    audit = stage_result(stages, "audit")
    if audit is None or "images" not in audit:
        parts.append(
            {"part": "under the audit's worst case", "verdict": UNTESTABLE, "note": why_missing(stages, "audit")}
        )
        texts.append(f"audit part not testable ({why_missing(stages, 'audit')})")
    else:
        worst = audit["images"]
        for ensemble in stage["images"]:
            members = ensemble.split(" + ")
            ens, margin, best, _ = _margin_over_members(worst, ensemble, members, weights)
            numbers[f"{ensemble} worst case"] = {
                "ensemble": number_record(ens),
                "minus_best_member": number_record(margin),
            }
            parts.append(
                judge(
                    f"{ensemble} under the audit's worst case minus its best member ({best})", margin, 0.0, "above", n
                )
            )
            texts.append(
                f"worst case {ensemble} {percent_text(ens)}; minus {best}: {estimate_text(margin * 100, fmt='.1f')} points"
            )
    return conclude(7, rule, "; ".join(texts), numbers, parts)


def _refit_rmse(frame: pd.DataFrame, fit_eps: list[float], weights: np.ndarray) -> np.ndarray:
    """The fit's RMSE under each resample: both counts refitted from the resampled images at the fit's eps."""
    # local: scipy's fit loads only when a finding needs it
    from trend_core.experiments.curve import fit_tm_curve

    eps = [float(c.split("@")[1]) for c in frame.columns if c.startswith("generated@")]
    gen = weights @ np.vstack([frame[f"generated@{e:g}"].to_numpy(float) for e in eps]).T
    tra = weights @ np.vstack([frame[f"transferred@{e:g}"].to_numpy(float) for e in eps]).T
    fit_idx = [i for i, e in enumerate(eps) if any(math.isclose(e, f, abs_tol=1e-9) for f in fit_eps)]
    out = np.full(len(weights), np.nan)
    fit_points = [eps[i] for i in fit_idx]
    full = fit_tm_curve(  # the whole sample's fit starts every resample's (one optimizer run instead of twelve)
        fit_points,
        [frame[f"transferred@{eps[i]:g}"].sum() for i in fit_idx],
        [frame[f"generated@{eps[i]:g}"].sum() for i in fit_idx],
    )
    for b in range(len(weights)):
        try:
            curve = fit_tm_curve(fit_points, tra[b, fit_idx], gen[b, fit_idx], start=full)
        except Exception:  # noqa: S112  (a resample the fit cannot follow, e.g. no adversarial image: undefined)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            tm = np.where(gen[b] > 0, tra[b] / np.where(gen[b] > 0, gen[b], 1), np.nan)
        ok = np.isfinite(tm)
        if ok.any():
            out[b] = float(np.sqrt(np.mean((curve.tm(np.array(eps)[ok]) - tm[ok]) ** 2)))
    return out


def finding_8(stages: dict) -> dict:
    rule = (
        f"held if, for every fitted pair, the interval of the RMSE of the 4-point fit's TM against every measured "
        f"point lies below {RMSE_MAX:g} (both curves refitted on each of {FIT_DRAWS} resamples of the test images; "
        "the interval is corrected for the bias refitting noisier resamples adds)"
    )
    stage = stage_result(stages, "fit")
    if stage is None or "images" not in stage:
        return finding(8, UNTESTABLE, rule, f"fit stage {why_missing(stages, 'fit')}")
    summary = stage["summary"]
    rmse = {str(p): float(r) for p, r in zip(summary["pair"], summary["rmse"])}
    points = {str(p): int(n) for p, n in zip(summary["pair"], summary["measured_points"])}
    if not rmse or any(not math.isfinite(v) for v in rmse.values()):
        return finding(8, UNTESTABLE, rule, "TM undefined at the measured points", {"rmse": rmse})
    measured_points = stage["measured"]
    parts, texts, numbers = [], [], {}
    for pair, value in rmse.items():
        frame = stage["images"][pair]
        weights = stats.resample_weights(len(frame), FIT_DRAWS)
        rows = measured_points[measured_points["pair"] == pair]
        fit_eps = [float(e) for e in rows.loc[rows["used_in_fit"].astype(bool), "eps"]]
        reps = _refit_rmse(frame, fit_eps, weights)
        # refitting resampled (noisier) counts inflates the RMSE: shift the replicates by that bias (their median
        # minus the estimate) so the interval is about the RMSE, not about the resamples' extra noise
        bias = float(np.nanmedian(reps)) - value if np.isfinite(reps).any() else 0.0
        est = Estimate(value, reps - bias)
        numbers[f"rmse {pair}"] = number_record(est)
        parts.append(judge(f"RMSE {pair}", est, RMSE_MAX, "below", len(frame)))
        texts.append(f"{pair}: RMSE {estimate_text(est)} over {points[pair]} points")
    return conclude(8, rule, "; ".join(texts), numbers, parts)


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


def evaluate_findings(stages: dict, others: dict | None = None, dataset: str = "this dataset") -> list[dict]:
    """The eight findings with verdicts and intervals, in order. ``others`` maps further datasets' names to their
    stages, for the finding that compares datasets (5); ``dataset`` names this one."""
    return [finding_5(stages, others, dataset) if rule is finding_5 else rule(stages) for rule in RULES]


def judge_across(reports: list[dict]) -> list[dict]:
    """Reports of one reproduction per dataset, each with its findings judged again knowing the others' stages
    (finding 5 compares datasets; the other findings do not change)."""
    judged = []
    for report in reports:
        name = report["settings"]["dataset"]
        others = {r["settings"]["dataset"]: r["stages"] for r in reports if r["settings"]["dataset"] != name}
        judged.append({**report, "findings": evaluate_findings(report["stages"], others, name)})
    return judged


def findings_frame(findings: list[dict]) -> pd.DataFrame:
    """The findings table: number, claim, measured (with 95% intervals), paper, verdict, rule, and for an
    inconclusive verdict about how many test images would decide it."""
    keys = ("finding", "claim", "measured", "paper", "verdict", "rule", "images_to_decide")
    return pd.DataFrame([{k: f.get(k) for k in keys} for f in findings])
