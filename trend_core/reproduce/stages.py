"""The stages of a reproduction, one function each: ``stage(ctx) -> dict`` of plain data (DataFrames, numbers,
strings, tensors) that the results store keeps and the findings rules and the report read.

A stage that lacks the models it needs returns ``{"status": "not run: <why>"}``; every other returns
``{"status": "done", ...}``. The engine caches every attack underneath, so a stage interrupted half way
resumes at its first unfinished attack. The ensemble stages live in ``vote_stages``; ``stage_list`` orders
them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from trend_core.attacks.base import predict
from trend_core.attacks.registry import make_attack
from trend_core.config.profiles import get_profile
from trend_core.config.specs import ModelSpec
from trend_core.data.datasets import load_dataset
from trend_core.errors import TrendError
from trend_core.experiments import audit as robustness_audit
from trend_core.experiments.boundary import decision_boundary
from trend_core.experiments.curve import fit_tm
from trend_core.experiments.transfer import run_transfer
from trend_core.experiments.transfer_tables import pair_statistics
from trend_core.models.zoo import Zoo
from trend_core.reproduce.settings import ReproSettings
from trend_core.runtime.progress import Progress, no_progress
from trend_core.storage.store import Store
from trend_core.training.train import accuracy

DONE = "done"
# The paper's clean accuracies (the TREND paper's tables: ResNet18 SGD, and VGG11 FP on CIFAR-10), by role.
PAPER_ACCURACY = {
    "cifar10": {"FP": 93.33, "Q8": 94.03, "Q4": 93.42, "Q2": 88.22, "Q1": 78.25, "HT": 86.99, "VGG": 88.58},
    "cifar100": {"FP": 72.55, "Q2": 62.66, "Q1": 48.17, "HT": 58.95},
}
TRANSFER_ROLES = ("FP", "FP-s1", "FP-s2", "FP-adam")
FAMILIES = {  # the paper's Figs. 1-3: which roles make up each TM matrix
    "architecture": ("FP", "VGG"),
    "input quantization": ("FP", "Q8", "Q4", "Q2", "Q1", "HT"),
    "weight/activation quantization": ("FP", "W2", "A2"),
}
PAPER_ENSEMBLES = (("FP", "Q1", "Q2"), ("FP", "Q1", "Q2", "HT"))


class ReproduceCancelled(Exception):
    """The run was cancelled; finished stages and attacks stay in the store."""


@dataclass
class StageContext:
    """What every stage reads: the settings, zoo, store, device, the evaluation images and earlier stages."""

    settings: ReproSettings
    zoo: Zoo
    store: Store
    device: torch.device
    progress: Progress = no_progress
    cancel: Callable[[], bool] | None = None
    results: dict = field(default_factory=dict)  # stage name -> its result, filled as the run goes
    _models: dict = field(default_factory=dict)
    _data: tuple | None = None

    def check(self) -> None:
        if self.cancel is not None and self.cancel():
            raise ReproduceCancelled("The reproduction was cancelled; finished work is kept in the store.")

    def label(self, role: str) -> str:
        return ModelSpec.parse(self.settings.models[role]).short_name

    def model(self, role: str) -> torch.nn.Module:
        if role not in self._models:
            self._models[role] = self.zoo.load(self.settings.models[role], self.device)
        return self._models[role]

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation images: the first ``limit`` test images."""
        if self._data is None:
            self._data = load_dataset(self.settings.dataset).tensors("test", self.settings.limit)
        return self._data


def not_run(reason: str) -> dict:
    return {"status": f"not run: {reason}"}


def missing_roles(ctx: StageContext, roles, minimum: int) -> str | None:
    have = ctx.settings.roles(*roles)
    if len(have) < minimum:
        return f"needs at least {minimum} of the models {', '.join(roles)}; this scale has {', '.join(have) or 'none'}"
    return None


# ----------------------------------------------------------------------------- 1. baseline accuracies
def baseline(ctx: StageContext) -> dict:
    """Clean test accuracy of every model used (the paper's Tables IV-VI), with the paper's figure beside it."""
    paper = PAPER_ACCURACY.get(ctx.settings.dataset, {})
    rows = []
    for i, (role, name) in enumerate(ctx.settings.models.items()):
        ctx.check()
        ctx.progress(i / len(ctx.settings.models), f"accuracy of {ctx.label(role)}")
        acc = ctx.zoo.metadata(name).get("test_acc")
        if acc is None:
            acc = accuracy(ctx.model(role), load_dataset(ctx.settings.dataset).test, ctx.device)
        rows.append(
            {
                "role": role,
                "model": ctx.label(role),
                "name": name,
                "test_acc_pct": 100 * float(acc),
                "paper_acc_pct": paper.get(role, math.nan),
            }
        )
    return {"status": DONE, "accuracy": pd.DataFrame(rows)}


# ----------------------------------------------------------------------------- 2. Tables II-III
def attack_list(s: ReproSettings) -> list[tuple[str, str, dict]]:
    """(label, registry name, parameters) of the four attacks the paper compares."""
    return [
        ("PGD", "pgd", {"eps": s.eps, "steps": s.pgd_steps, "step_size": s.pgd_step_size, "seed": s.seed}),
        ("CW k=0", "cw", {"kappa": 0.0, "steps": s.cw_steps, "binary_search_steps": s.cw_search_steps}),
        ("CW k=30", "cw", {"kappa": 30.0, "steps": s.cw_steps, "binary_search_steps": s.cw_search_steps}),
        ("DeepFool", "deepfool", {"steps": s.deepfool_steps}),
    ]


def _transfer(ctx: StageContext, roles, name: str, params: dict):
    models = [ctx.model(r) for r in roles]
    return run_transfer(
        models,
        make_attack(name, **params),
        data=ctx.data(),
        cache=ctx.store,
        device=ctx.device,
        cancel=ctx.cancel,
        profile=ctx.settings.profile,
    )


def transfer_attacks(ctx: StageContext) -> dict:
    """Transfer between seeds and between optimizers under PGD, CW (kappa 0, 30) and DeepFool (Tables II-III)."""
    why = missing_roles(ctx, TRANSFER_ROLES, 2)
    if why:
        return not_run(why)
    roles = ctx.settings.roles(*TRANSFER_ROLES)
    labels = {r: ctx.label(r) for r in roles}
    sgd = [labels[r] for r in roles if r != "FP-adam"]
    adam = [labels[r] for r in roles if r == "FP-adam"]
    relations = {"between seeds (SGD)": (sgd, sgd)}
    if adam:
        relations.update({"SGD -> Adam": (sgd, adam), "Adam -> SGD": (adam, sgd)})
    attacks = attack_list(ctx.settings)
    frames, rows, images = [], [], {}
    for i, (label, name, params) in enumerate(attacks):
        ctx.check()
        ctx.progress(i / len(attacks), f"{label}: attacking {len(roles)} models")
        result = _transfer(ctx, roles, name, params)
        images[label] = result.image_outcomes()
        pairs = result.long()
        pairs["attack"] = label
        frames.append(pairs)
        for relation, (src, tgt) in relations.items():
            chosen = pairs[pairs["source"].isin(src) & pairs["target"].isin(tgt) & (pairs["source"] != pairs["target"])]
            if len(chosen):
                rows.append({"attack": label, "relation": relation, **pair_statistics(chosen)})
    table = pd.DataFrame(rows)
    return {
        "status": DONE,
        "table": table,
        "pairs": pd.concat(frames, ignore_index=True),
        "images": images,
        "relations": {k: {"sources": v[0], "targets": v[1]} for k, v in relations.items()},
    }


# ----------------------------------------------------------------------------- 3. TM matrices (Figs. 1-3)
def matrices(ctx: StageContext) -> dict:
    """One PGD transfer run over every model; the architecture, input- and weight/activation-quantization
    matrices are its sub-matrices, and TREND selects from the whole."""
    roles = list(ctx.settings.models)
    if len(roles) < 2:
        return not_run("needs at least two models")
    ctx.progress(0.0, f"PGD: attacking {len(roles)} models")
    pgd = attack_list(ctx.settings)[0]
    result = _transfer(ctx, roles, pgd[1], pgd[2])
    families = {}
    for family, wanted in FAMILIES.items():
        have = ctx.settings.roles(*wanted)
        if len(have) >= 2:
            families[family] = [ctx.label(r) for r in have]
    return {
        "status": DONE,
        "pairs": result.long(),
        "images": result.image_outcomes(),
        "labels": [ctx.label(r) for r in roles],
        "roles": {ctx.label(r): r for r in roles},
        "families": families,
        "warnings": list(result.warnings),
    }


def tm_matrix(pairs: pd.DataFrame, labels) -> pd.DataFrame:
    """TM as rows = source, columns = target over ``labels`` (from a transfer run's long form)."""
    grid = pairs.pivot(index="source", columns="target", values="tm").astype(float)
    labels = [label for label in labels if label in grid.index and label in grid.columns]
    return grid.reindex(index=labels, columns=labels)


def with_averages(grid: pd.DataFrame) -> pd.DataFrame:
    """The matrix plus row_avg / col_avg leaving out the diagonal (as transfer results show them)."""
    off = grid.where(~np.eye(len(grid), dtype=bool))
    out = grid.copy()
    out["row_avg"] = off.mean(axis=1)
    out.loc["col_avg"] = [*off.mean(axis=0), off.stack().mean()]
    return out


# ----------------------------------------------------------------------------- 4. decision boundary (Fig. 4)
def boundary(ctx: StageContext) -> dict:
    """A decision-boundary slice around one test image for FP and Q1 (the first image FP classifies right)."""
    pair = ctx.settings.roles("FP", "Q1") if "Q1" in ctx.settings.models else list(ctx.settings.models)[:2]
    if len(pair) < 2:
        return not_run("needs FP and a second model")
    x, y = ctx.data()
    correct = (predict(ctx.model("FP"), x.to(ctx.device)).cpu() == y).nonzero().flatten()
    index = int(correct[0]) if len(correct) else 0
    ctx.progress(0.2, f"classifying a {ctx.settings.boundary_resolution}-point grid around image {index}")
    sl = decision_boundary(
        [ctx.model(r) for r in pair],
        x[index],
        int(y[index]),
        resolution=ctx.settings.boundary_resolution,
        seed=ctx.settings.seed,
        names=[ctx.label(r) for r in pair],
    )
    return {
        "status": DONE,
        "index": index,
        "label": int(sl.label),
        "names": sl.names,
        "x_offsets": [float(v) for v in sl.x_offsets],
        "y_offsets": [float(v) for v in sl.y_offsets],
        "classes": {n: torch.from_numpy(sl.classes[n].astype("int64")) for n in sl.names},
        "distances": sl.distance_frame().reset_index(),
    }


# ----------------------------------------------------------------------------- 7. TM(eps) fit (Fig. 12, Table VII)
def fit_pairs(settings: ReproSettings) -> list[tuple[str, str]]:
    """The pairs whose TM(eps) is fitted: FP -> another seed and FP -> Q2, where present."""
    return [("FP", t) for t in ("FP-s1", "Q2") if t in settings.models] or [
        ("FP", r) for r in list(settings.models)[1:2]
    ]


def tm_fit(ctx: StageContext) -> dict:
    """TM(eps) fitted from 4 eps against a 20-point measured PGD sweep, with the RMSE (the paper's Table VII)."""
    pairs = fit_pairs(ctx.settings)
    if not pairs:
        return not_run("needs two models")
    s = ctx.settings
    top = max([*s.fit_eps, *s.sweep_eps])
    attack = make_attack("pgd", eps=top, steps=s.fit_steps, seed=s.seed)
    summaries, measured, curves, failures, images = [], [], [], [], {}
    for i, (src, tgt) in enumerate(pairs):
        ctx.check()
        ctx.progress(
            i / len(pairs), f"PGD at {len(set(s.fit_eps) | set(s.sweep_eps))} eps: {ctx.label(src)} -> {ctx.label(tgt)}"
        )
        pair = f"{ctx.label(src)} -> {ctx.label(tgt)}"
        try:
            result = fit_tm(
                ctx.model(src),
                ctx.model(tgt),
                list(s.fit_eps),
                list(s.sweep_eps),
                attack=attack,
                data=ctx.data(),
                cache=ctx.store,
                device=ctx.device,
                profile=s.profile,
            )
        except TrendError as exc:  # e.g. the source yields no adversarial image at any eps
            failures.append(f"{pair}: {exc}")
            continue
        summary = result.summary()
        summaries.append(
            {
                "pair": pair,
                "rmse": float(result.rmse),
                "max_abs_error": float(result.max_abs_error),
                "measured_points": summary["measured_points"],
                **result.curve.params(),
            }
        )
        points = result.measured.copy()
        points["tm_fit"] = result.curve.tm(points["eps"].to_numpy(float))
        measured.append(points.assign(pair=pair))
        images[pair] = fit_images(ctx, src, tgt, attack, points["eps"].to_numpy(float))
        curves.append(result.predictions(points=80).assign(pair=pair))
    if not summaries:
        return not_run("; ".join(failures))
    return {
        "status": DONE,
        "summary": pd.DataFrame(summaries),
        "measured": pd.concat(measured, ignore_index=True),
        "curves": pd.concat(curves, ignore_index=True),
        "failures": failures,
        "images": images,
    }


def fit_images(ctx: StageContext, src: str, tgt: str, attack, epsilons) -> pd.DataFrame:
    """Per test image and eps, whether it counts in the pair's f_ss (``generated@<eps>``) and f_st
    (``transferred@<eps>``), as ``measure_tm`` counts them; the attacks come from the store the fit just filled."""
    results = run_transfer(
        [ctx.model(src), ctx.model(tgt)],
        attack,
        data=ctx.data(),
        cache=ctx.store,
        device=ctx.device,
        sources=[0],
        targets=[0, 1],
        epsilons=[float(e) for e in epsilons],
        profile=ctx.settings.profile,
    )
    own_total = get_profile(ctx.settings.profile).tm_f_ss == "source"
    columns = {}
    for result in results:
        a, b = result.sources[0], result.targets[1]
        io = result.image_outcomes()
        hit = io[f"correct:{a}"] & io[f"success:{a}"]
        common = hit & io[f"correct:{b}"]
        columns[f"generated@{result.eps:g}"] = (hit if own_total else common).to_numpy()
        columns[f"transferred@{result.eps:g}"] = (common & io[f"fooled:{a}>{b}"]).to_numpy()
    return pd.DataFrame(columns)


# ----------------------------------------------------------------------------- 8. robustness audit
def audit(ctx: StageContext) -> dict:
    """The audit's worst case (every attack of its battery) for each TREND ensemble and each of its members."""
    t = ctx.results.get("trend", {})
    if t.get("status") != DONE:
        return not_run("needs the TREND ensembles")
    s = ctx.settings
    role_of = ctx.results["matrices"]["roles"]
    rows, flags, images = [], [], {}
    targets: list[tuple[str, list[str], bool]] = []
    for ensemble in t["chosen"]["ensemble"]:
        members = ensemble.split(" + ")
        targets.append((ensemble, members, True))
        targets += [(m, [m], False) for m in members if all(m != name for name, _, _ in targets)]
    weights = [len(members) for _, members, _ in targets]  # a vote's audit attacks each of its members
    for i, (name, members, is_ensemble) in enumerate(targets):
        ctx.check()
        start, share = sum(weights[:i]) / sum(weights), weights[i] / sum(weights)

        def audit_progress(
            f: float | None, m: str | None, start: float = start, share: float = share, name: str = name
        ) -> None:
            ctx.progress(start + share * min(max(f or 0.0, 0.0), 1.0), f"auditing {name}: {m}")

        audit_progress(0.0, "starting")
        try:
            report = robustness_audit.run_audit(
                [s.models[role_of[m]] for m in members],
                zoo=ctx.zoo,
                ensemble=is_ensemble,
                epsilons=[s.trend_eps],
                level=s.audit_level,
                data=s.dataset,
                limit=s.limit,
                device=str(ctx.device),
                cache=ctx.store,
                progress=audit_progress,
            )
        except TrendError as exc:  # the data do not allow this audit (e.g. a model the battery cannot attack)
            return not_run(f"the audit of {name} failed: {exc}")
        worst = report.worst_case
        value = float(worst.loc[np.isclose(worst["eps"].astype(float), s.trend_eps), "robust_accuracy"].iloc[0])
        per_image = [v for e, v in getattr(report, "worst_per_image", {}).items() if math.isclose(e, s.trend_eps)]
        if per_image:
            images[name] = np.asarray(per_image[0], dtype=float)
        robust = report.robust
        strongest = robust.loc[robust["robust_accuracy"].astype(float).idxmin()]
        rows.append(
            {
                "model": name,
                "ensemble": bool(is_ensemble),
                "eps": s.trend_eps,
                "worst_case_accuracy": value,
                "strongest_attack": str(strongest["attack"]),
            }
        )
        flags += [{"model": name, "flag": f.name, "fired": bool(f.fired), "sentence": f.sentence} for f in report.flags]
    return {
        "status": DONE,
        "worst_case": pd.DataFrame(rows),
        "flags": pd.DataFrame(flags, columns=["model", "flag", "fired", "sentence"]),
        "images": pd.DataFrame(images),
    }


def check_stage_result(name: str, result: dict) -> dict:
    """A stage's result must say whether it ran (a programming error otherwise)."""
    if not isinstance(result, dict) or not str(result.get("status", "")).startswith(("done", "not run")):
        raise TrendError(f"Stage {name} returned no status.")
    return result
