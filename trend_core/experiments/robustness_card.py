"""A robustness card for a chosen majority-vote ensemble: what a defender ships beside the exported file.

On the same test images: each member's clean accuracy and the vote's, A-GD robust accuracy of the vote per eps
(``vote_robustness.agd_evaluation``), the audit's per-image worst case per eps and its flags
(``audit.run_audit``), the TM sub-matrix among the members (a transfer run, or one given), each with its 95%
bootstrap interval where it is a rate over the images, and the `trend ...` commands that reproduce it (filled
by the caller, who knows the store folder and device). ``plots.card`` renders it as JSON and HTML.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from trend_core.attacks.base import predict
from trend_core.attacks.registry import make_attack
from trend_core.attacks.settings import attack_settings
from trend_core.config.labels import model_labels
from trend_core.config.version import VERSION
from trend_core.ensemble.selection import ENSEMBLE_LABEL
from trend_core.ensemble.verdict import accuracy_interval
from trend_core.errors import TrendError
from trend_core.experiments.audit import check_level, resolve_models, run_audit
from trend_core.experiments.eval_data import evaluation_data
from trend_core.experiments.transfer import run_transfer
from trend_core.experiments.transfer_result import TransferResult, json_safe
from trend_core.experiments.vote_robustness import agd_evaluation
from trend_core.models.zoo import Zoo
from trend_core.nn.vote import MajorityVote
from trend_core.runtime.options import RunOptions, run_options
from trend_core.runtime.progress import Progress, WorkMeter, no_progress
from trend_core.stats import Interval

CARD_VERSION = "trend-card/v1"
TM_STEPS = 20  # PGD steps of the transfer run behind the TM sub-matrix (as the TREND builder's default)
AGD_STEPS = 20  # A-GD steps (as the TREND builder's default)


@dataclass
class RobustnessCard:
    """Plain data (numbers, strings, lists; None where undefined), so JSON round-trips it exactly."""

    dataset: str
    members: list[dict]  # name (zoo name or None), label, clean: {accuracy, ci_low, ci_high}
    vote_clean: dict  # {accuracy, ci_low, ci_high}: expectation over the vote's tie-break
    n_images: int
    agd: list[dict]  # per eps: eps, steps, accuracy, ci_low, ci_high
    audit: list[dict]  # per eps: eps, level, accuracy, ci_low, ci_high (the per-image worst case)
    flags: list[dict]  # name, fired, sentence (the audit's sanity flags)
    tm: dict  # labels, matrix (rows: source, columns: target; None undefined), attack, eps, params, source
    seed: int = 0
    commands: list[str] = field(default_factory=list)
    created: str = ""
    version: str = VERSION
    card_version: str = CARD_VERSION

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> RobustnessCard:
        """The card a ``to_dict`` (or its JSON) holds; a TrendError for anything else."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or data.get("card_version") != CARD_VERSION:
            raise TrendError(f"This is not a robustness card of this version ({CARD_VERSION}).")
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def labels(self) -> list[str]:
        return [m["label"] for m in self.members]


def _part(work: WorkMeter, units: float) -> Progress:
    """The ``Progress`` of a part worth ``units`` of ``work`` (an unknown fraction counts as its start)."""
    report = work.part(units)
    return lambda fraction, message: report(fraction or 0.0, message)


def interval_dict(value: Interval) -> dict:
    """An accuracy interval as the card stores it."""
    return {"accuracy": value.estimate, "ci_low": value.low, "ci_high": value.high}


def robustness_card(
    models: Sequence[nn.Module | str],
    *,
    epsilons: Sequence[float],
    data: Any = None,
    zoo: Any = None,
    steps: int = AGD_STEPS,
    level: str = "quick",
    tm: pd.DataFrame | TransferResult | None = None,
    tm_eps: float | None = None,
    tm_steps: int = TM_STEPS,
    surrogates: Sequence[nn.Module | str] | None = None,
    seed: int = 0,
    options: RunOptions | None = None,
    **keywords: Any,
) -> RobustnessCard:
    """The card of the majority vote of ``models`` (nn.Modules, zoo names, imported ``user/...`` names).

    ``epsilons``: the L-inf budgets of A-GD and of the audit; ``data``: as ``run_audit`` (default the models' test
    split); ``level``: the audit's; ``tm``: a TM matrix (labels or zoo names as index and columns) or a
    TransferResult holding the members, else a PGD transfer run at ``tm_eps`` (default the smallest eps) with
    ``tm_steps`` steps on the same images; ``surrogates``: the audit's (default: its own pick); ``options`` (or its fields as keywords): limit, device, cache,
    progress. Bad input raises a TrendError before any attack runs."""
    opts = run_options(options, keywords, "robustness_card")
    progress = opts.progress or no_progress
    items = list(models)
    if len(items) < 2:
        raise TrendError("A robustness card is for an ensemble: give at least two member models.")
    eps_list = sorted({float(e) for e in epsilons})
    if not eps_list:
        raise TrendError("Give at least one eps.")
    check_level(level)
    uses_zoo = zoo is not None or any(isinstance(m, str) for m in items)
    zoo = (zoo if isinstance(zoo, Zoo) else Zoo(zoo)) if uses_zoo else None
    members, names = resolve_models(items, zoo)
    if len(members) < 2:
        raise TrendError("A robustness card is for an ensemble: give at least two distinct member models.")
    x, y = evaluation_data(members, data, "test", opts.limit)
    x, y = x.cpu(), y.cpu()
    labels = model_labels(members)
    datasets = {str(getattr(getattr(m, "spec", None), "dataset", "")) for m in members} - {""}
    dataset = datasets.pop() if len(datasets) == 1 else "custom"
    vote = MajorityVote(members, seed, labels)
    inner = dataclasses.replace(opts, limit=None, progress=None)
    work = WorkMeter(progress, 1.0)

    rows = []
    with torch.no_grad():
        for member, name, label in zip(members, names, labels):
            correct = (predict(member.cpu(), x) == y).float().numpy()
            rows.append({"name": name, "label": label, "clean": interval_dict(accuracy_interval(correct))})
        vote_clean = interval_dict(accuracy_interval(vote.cpu().expected_accuracy(x, y).float().cpu().numpy()))

    work.start("TM among the members")
    tm_part = tm_of(members, names, labels, tm, tm_eps or eps_list[0], tm_steps, (x, y), inner, _part(work, 0.15))
    agd = []
    for i, eps in enumerate(eps_list):
        work.start(f"A-GD at eps {eps:g}")
        _, per_image = agd_evaluation(
            vote,
            eps,
            steps,
            members_alone=False,
            data=(x, y),
            seed=seed,
            cache=inner.cache,
            device=inner.device,
            profile=inner.profile,
            progress=_part(work, 0.25 / len(eps_list)),
        )
        found = interval_dict(accuracy_interval(per_image[ENSEMBLE_LABEL].to_numpy(float)))
        agd.append({"eps": eps, "steps": int(steps), **found})
    work.start("the audit")
    report = run_audit(
        members,
        epsilons=eps_list,
        ensemble=True,
        level=level,
        data=(x, y),
        zoo=zoo,
        surrogates=surrogates,
        options=dataclasses.replace(inner, progress=_part(work, 0.6)),
    )
    audit = [
        {"eps": eps, "level": level, **interval_dict(accuracy_interval(np.asarray(report.worst_per_image[eps])))}
        for eps in eps_list
    ]
    flags = [{"name": f.name, "fired": bool(f.fired), "sentence": f.sentence} for f in report.flags]
    progress(1.0, "done")
    card = RobustnessCard(
        dataset=dataset,
        members=rows,
        vote_clean=vote_clean,
        n_images=len(y),
        agd=agd,
        audit=audit,
        flags=flags,
        tm=tm_part,
        seed=int(seed),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    return RobustnessCard.from_dict(card.to_dict())  # NaN as None from the start: its JSON reads back equal


def tm_of(
    members: list[nn.Module],
    names: list[str | None],
    labels: list[str],
    given: pd.DataFrame | TransferResult | None,
    eps: float,
    steps: int,
    data: tuple[torch.Tensor, torch.Tensor],
    options: RunOptions,
    progress: Any,
) -> dict:
    """The TM sub-matrix among the members (rows: source, columns: target) in the members' labels: from
    ``given`` (a matrix or a TransferResult; rows and columns found by label or zoo name), else measured by a PGD
    transfer run at ``eps``."""
    params: dict = {}
    if given is None:
        dataset = str(getattr(getattr(members[0], "spec", None), "dataset", "") or "digits")
        params = attack_settings("pgd", dataset).complete(eps=eps, steps=steps)
        given = run_transfer(
            members, make_attack("pgd", **params), data=data, options=dataclasses.replace(options, progress=progress)
        )
        source = "measured"
    else:
        source = "given"
    attack, at_eps = "", None
    if isinstance(given, TransferResult):
        attack, at_eps = given.attack, given.eps
        aliases = {label: label for label in given.sources}
        aliases.update({name: label for label, name in given.specs.items() if name})
        matrix = given.matrix(averages=False)
    elif isinstance(given, pd.DataFrame):
        matrix, aliases = given, {str(k): k for k in given.index}
    else:
        raise TrendError(f"tm must be a TM matrix (DataFrame) or a TransferResult, got {type(given).__name__}.")
    found = []
    for name, label in zip(names, labels):
        key = aliases.get(name or "", aliases.get(label))
        if key is None or key not in matrix.index or key not in matrix.columns:
            raise TrendError(
                f"The TM matrix has no row and column for {name or label}; measure a run over the members."
            )
        found.append(key)
    sub = matrix.loc[found, found].astype(float)
    return {
        "labels": labels,
        "matrix": [[float(v) for v in row] for row in sub.to_numpy()],
        "attack": attack,
        "eps": at_eps,
        "params": {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))},
        "source": source,
    }
