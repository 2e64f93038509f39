"""The audit's sanity flags: each reads the battery's robust accuracies and says, in one sentence, whether a sign
of gradient masking or a broken attack shows (flat curves, robustness at huge eps, BPDA beating the substitute)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch.nn as nn

from trend_core.attacks.base import Attack

SANITY_EPS = 0.5  # a budget at which every honest L-inf attack should leave (almost) nothing robust
NEAR_ZERO = 0.05  # "near 0" robust accuracy at SANITY_EPS
MARGIN = 0.02  # differences smaller than this (or than two images) are noise, not a finding
BPDA_MARGIN = 0.05  # "much stronger": the identity backward pass beats the substitute by this much


@dataclass
class BatteryAttack:
    """One row group of the battery: an attack crafted on ``source`` and evaluated on the audited target."""

    label: str
    kind: str  # whitebox | blackbox | transfer | baseline
    attack: Attack  # its eps is set per run
    source: nn.Module  # what the attack is run on (the target, a BPDA variant of it, or a surrogate)
    epsilons: list[float]
    group: str = ""  # attacks compared by a flag (e.g. "ce-steps", "bpda")


@dataclass(frozen=True)
class AuditFlag:
    """One sanity check: its name, whether it fired, and a sentence on what the numbers show and mean."""

    name: str
    fired: bool
    sentence: str


def audit_flags(robust: pd.DataFrame, worst: pd.DataFrame, plan: Sequence[BatteryAttack], n: int) -> list[AuditFlag]:
    """The sanity flags, each computed from the robust-accuracy table."""
    margin = max(MARGIN, 2 / max(n, 1))
    eps_user = sorted(set(robust.loc[robust["kind"] == "baseline", "eps"])) or sorted(set(robust["eps"]))
    return [
        masking_flag(robust, eps_user, margin),
        large_eps_flag(robust, worst),
        monotone_flag(robust, margin),
        convergence_flag(robust, plan, eps_user, margin),
        bpda_flag(robust, plan, margin),
    ]


def _acc(robust: pd.DataFrame, attack: str, eps: float) -> float | None:
    rows = robust[(robust["attack"] == attack) & (robust["eps"] == eps)]
    return float(rows["robust_accuracy"].iloc[0]) if len(rows) else None


def masking_flag(robust: pd.DataFrame, eps_user: Sequence[float], margin: float) -> AuditFlag:
    findings = []
    for eps in eps_user:
        at = robust[robust["eps"] == eps]
        white = at[at["kind"].isin(["whitebox", "baseline"])]
        other = at[at["kind"].isin(["blackbox", "transfer"])]
        if white.empty or other.empty:
            continue
        best_white = white.loc[white["robust_accuracy"].idxmin()]
        best_other = other.loc[other["robust_accuracy"].idxmin()]
        if best_other["robust_accuracy"] < best_white["robust_accuracy"] - margin:
            findings.append(
                f"at eps {eps:g} {best_other['attack']} leaves {best_other['robust_accuracy']:.1%} "
                f"where the best gradient attack ({best_white['attack']}) leaves "
                f"{best_white['robust_accuracy']:.1%}"
            )
    if findings:
        return AuditFlag(
            "gradient_masking",
            True,
            "Gradient masking: a black-box or transfer attack beats every "
            "white-box one (" + "; ".join(findings) + "), so the gradients the white-box attacks "
            "follow are misleading and gradient-based robustness figures overstate robustness.",
        )
    return AuditFlag(
        "gradient_masking",
        False,
        "No sign of gradient masking: no black-box or transfer attack is stronger than the best white-box attack.",
    )


def large_eps_flag(robust: pd.DataFrame, worst: pd.DataFrame) -> AuditFlag:
    at = robust[(robust["eps"] == SANITY_EPS) & (robust["kind"] == "whitebox")]
    w = worst[worst["eps"] == SANITY_EPS]
    if at.empty:
        return AuditFlag("large_eps_not_zero", False, f"Not checked: no white-box attack ran at eps {SANITY_EPS:g}.")
    best = at.loc[at["robust_accuracy"].idxmin()]
    worst_acc = float(w["robust_accuracy"].iloc[0]) if len(w) else math.nan
    if best["robust_accuracy"] > NEAR_ZERO or worst_acc > NEAR_ZERO:
        return AuditFlag(
            "large_eps_not_zero",
            True,
            f"At eps {SANITY_EPS:g}, where any image can be turned into "
            f"almost any other, the best white-box attack ({best['attack']}) still leaves "
            f"{best['robust_accuracy']:.1%} robust (worst case {worst_acc:.1%}): the attacks are "
            "not reaching what the budget allows, a sign of masked gradients or a broken attack.",
        )
    return AuditFlag(
        "large_eps_not_zero",
        False,
        f"At eps {SANITY_EPS:g} the attacks leave {worst_acc:.1%} robust "
        f"({best['attack']}: {best['robust_accuracy']:.1%}), as an honest attack should.",
    )


def monotone_flag(robust: pd.DataFrame, margin: float) -> AuditFlag:
    findings = []
    for attack, rows in robust.groupby("attack", sort=False):
        values = rows.sort_values("eps")[["eps", "robust_accuracy"]].to_numpy()
        for (e0, a0), (e1, a1) in itertools.pairwise(values):
            if a1 > a0 + margin:
                findings.append(f"{attack}: {a0:.1%} at eps {e0:g} but {a1:.1%} at eps {e1:g}")
    if findings:
        return AuditFlag(
            "not_monotone",
            True,
            "Robust accuracy rises with eps (" + "; ".join(findings) + "): a "
            "larger budget contains every smaller one, so the attack is failing to use it.",
        )
    return AuditFlag("not_monotone", False, "Robust accuracy falls (or stays) as eps grows, for every attack.")


def convergence_flag(
    robust: pd.DataFrame, plan: Sequence[BatteryAttack], eps_user: Sequence[float], margin: float
) -> AuditFlag:
    long = next((p.label for p in plan if p.group == "ce"), None)
    short = next((p.label for p in plan if p.group == "ce-short"), None)
    if long is None or short is None:
        return AuditFlag("not_converged", False, "Not checked.")
    findings = []
    for eps in eps_user:
        a_short, a_long = _acc(robust, short, eps), _acc(robust, long, eps)
        if a_short is not None and a_long is not None and a_long < a_short - margin:
            findings.append(f"at eps {eps:g} {a_short:.1%} with {short} but {a_long:.1%} with {long}")
    if findings:
        return AuditFlag(
            "not_converged",
            True,
            "More steps or restarts still lower robust accuracy ("
            + "; ".join(findings)
            + "): the attack has not converged and a stronger budget "
            "(the thorough level) may lower it further.",
        )
    return AuditFlag(
        "not_converged",
        False,
        f"Doubling the budget ({short} to {long}) lowers robust accuracy by "
        f"less than {margin:.0%}: the attack has converged.",
    )


def bpda_flag(robust: pd.DataFrame, plan: Sequence[BatteryAttack], margin: float) -> AuditFlag:
    """Fires when another backward pass (the identity, or the smooth approximation) beats the model's own
    substitute by more than BPDA_MARGIN: the substitute's gradient, not the defence, made it look robust."""
    others = list(dict.fromkeys(p.label for p in plan if p.group in ("bpda-identity", "bpda-smooth")))
    default = next((p.label for p in plan if p.group == "ce"), None)
    if not others or default is None:
        return AuditFlag(
            "bpda_identity_stronger",
            False,
            "Not applicable: no input transform here has a backward substitute other than the identity.",
        )
    findings = []
    for other in others:
        for eps in sorted(set(robust.loc[robust["attack"] == other, "eps"])):
            a_default, a_other = _acc(robust, default, eps), _acc(robust, other, eps)
            if a_default is not None and a_other is not None and a_other < a_default - max(BPDA_MARGIN, margin):
                findings.append(
                    f"at eps {eps:g} {a_other:.1%} with {other} against {a_default:.1%} through the default substitute"
                )
    if findings:
        return AuditFlag(
            "bpda_identity_stronger",
            True,
            "Another backward pass (BPDA) is much stronger than the "
            "default substitute (" + "; ".join(findings) + "): robustness measured through the "
            "substitute comes from its weak gradient, not from the defence.",
        )
    return AuditFlag(
        "bpda_identity_stronger",
        False,
        "Neither the identity nor the smooth backward pass (BPDA) is much stronger than the default substitute.",
    )
