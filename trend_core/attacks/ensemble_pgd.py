"""Ensemble attacks: the shared PGD loop with a pluggable ensemble direction rule.

Each step computes every member's input gradient G_i (one forward/backward per member) and turns the stack
(N, B, ...) into a direction D in {-1, 0, 1}:

    dag    sign(mean_i G_i)                                    direction of the average gradient
    empir  sign(mean of G_i over members voting for the ensemble's predicted class), per image
    ugd    sign(A) where all members' signs agree, 0 elsewhere; A = mean_i sign(G_i)   (our reading of the paper)
    agd    sign(mean_i sign(G_i))                              average gradient direction

The rules are pure functions of the gradient stack (and, for empir, the votes), testable on hand-made tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from trend_core.attacks.base import MAX_STEPS, Attack, AttackResult, attack_mode, check_float, check_int, model_device
from trend_core.attacks.pgd import gradient_and_logits, pgd_loop, step_size_for
from trend_core.config.profiles import get_profile
from trend_core.errors import TrendError
from trend_core.nn.twin import inference_twin
from trend_core.nn.vote import MajorityVote, as_ensemble

RULE_NAMES = ("dag", "empir", "ugd", "agd")
RULE_LABELS = {"dag": "D-AG", "empir": "EMPIR", "ugd": "U-GD", "agd": "A-GD"}
StepCallback = Callable[[int, torch.Tensor], None]  # (step index, per-member agreement (N,)) -> None


# ----------------------------------------------------------------------------- direction rules
def dag_direction(
    grads: torch.Tensor, preds: torch.Tensor | None = None, decision: torch.Tensor | None = None
) -> torch.Tensor:
    """D-AG: the sign of the members' mean gradient (a member with a much larger gradient dominates it)."""
    return grads.mean(dim=0).sign()


def agd_direction(
    grads: torch.Tensor, preds: torch.Tensor | None = None, decision: torch.Tensor | None = None
) -> torch.Tensor:
    """A-GD: the sign of the mean of the members' gradient signs (a per-coordinate majority of signs)."""
    return grads.sign().mean(dim=0).sign()


def ugd_direction(
    grads: torch.Tensor, preds: torch.Tensor | None = None, decision: torch.Tensor | None = None
) -> torch.Tensor:
    """U-GD: the members' common sign where all agree, 0 elsewhere (M = floor(|A|) sign(A), A = mean sign)."""
    return grads.sign().mean(dim=0).trunc()


def empir_direction(
    grads: torch.Tensor, preds: torch.Tensor | None = None, decision: torch.Tensor | None = None
) -> torch.Tensor:
    """EMPIR-style: the sign of the mean gradient of the members whose vote equals the ensemble's, per image.

    ``preds`` (N, B): each member's predicted class at the current point; ``decision`` (B,): the ensemble's (as
    the authors do, taken once at the start point: see ``EnsemblePGD``'s ``empir_vote``). An image where no
    member votes for the decision any longer does not move (direction 0), as in the authors' code.
    """
    if preds is None or decision is None:
        raise TrendError("The EMPIR direction needs the members' predictions and the ensemble's decision.")
    voted = (preds == decision.unsqueeze(0)).to(grads.dtype)  # (N, B)
    weights = voted.view(*voted.shape, *[1] * (grads.dim() - 2))
    return (grads * weights).sum(dim=0).sign()


RULES: dict[str, Callable[..., torch.Tensor]] = {
    "dag": dag_direction,
    "empir": empir_direction,
    "ugd": ugd_direction,
    "agd": agd_direction,
}


def check_rule(rule: str) -> str:
    """A rule name (case-insensitive; the paper's labels like 'A-GD' work too) -> its key, or a TrendError."""
    text = str(rule).lower().replace("-", "").replace("_", "")
    key = {"dag": "dag", "empir": "empir", "ugd": "ugd", "agd": "agd"}.get(text)
    if key is None:
        raise TrendError(f"Unknown ensemble attack rule {rule!r}; choose one of {', '.join(RULE_NAMES)}.")
    return key


def sign_agreement(direction: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Per member, the fraction of coordinates (over the whole batch) where ``direction`` equals sign(G_i)."""
    return (grads.sign() == direction.unsqueeze(0)).flatten(1).float().mean(dim=1)


def member_gradients(
    members: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's input gradient of its summed cross-entropy (N, B, ...) and its predictions (N, B) at x.

    One forward and one backward per member; parameters must not require grad (see ``attack_mode``).
    """
    grads, preds = [], []
    for member in members:
        grad, logits = gradient_and_logits(member, x, y)
        grads.append(grad)
        preds.append(logits.argmax(dim=1))
    return torch.stack(grads), torch.stack(preds)


# ----------------------------------------------------------------------------- the attack
EMPIR_VOTES = ("start", "step")


class EnsemblePGD(Attack):
    """PGD against a majority-vote ensemble with one of the four direction rules.

    The model passed to ``attack``/``run`` is a ``MajorityVote`` (a list of members is wrapped in one with
    this attack's seed and profile); success is measured on the majority vote. Random start: under the
    ``paper`` profile x_0 = clip(x + step_size * U(-1, 1)), under ``authors`` clip(x + eps * U(-1, 1)), projected
    onto the eps-ball; then ``steps`` projected steps of ``step_size`` (default ``step_size_for(eps, steps)``: the
    paper's 0.01 unless that cannot reach eps) along the rule's direction. ``eps`` defaults to the profile's
    (8/255 paper, 0.01 authors). EMPIR compares each member's vote with the ensemble's decision at the start
    point (``empir_vote="start"``, the authors' timing, which made the paper's figures) or recomputes the
    decision at every step (``"step"``). ``on_step(t, agreement)`` (optional, not part of the cache key)
    receives, after each step's direction, the per-member fraction of coordinates where the direction equals
    that member's gradient sign ("gradient domination"); without it nothing extra is computed. Images are
    (B, C, H, W) in [0, 1].

    >>> attack = EnsemblePGD("agd", eps=0.1, steps=20)            # doctest: +SKIP
    >>> result = attack(MajorityVote([model_a, model_b, model_c]), x, y)  # doctest: +SKIP
    """

    norm = "linf"

    def __init__(
        self,
        rule: str = "agd",
        eps: float | None = None,
        steps: int = 40,
        step_size: float | None = None,
        random_start: bool = True,
        batch_size: int | None = None,
        seed: int = 0,
        on_step: StepCallback | None = None,
        empir_vote: str = "start",
        profile: str = "paper",
    ):
        self.rule = check_rule(rule)
        settings = get_profile(profile)
        self.profile = settings.name
        super().__init__(settings.ensemble_eps if eps is None else eps, batch_size, seed)
        if empir_vote not in EMPIR_VOTES:
            raise TrendError(f"Unknown EMPIR vote timing {empir_vote!r}; choose one of {', '.join(EMPIR_VOTES)}.")
        self.empir_vote = empir_vote
        self._start = settings.ensemble_start
        self.steps = check_int("Ensemble attack steps", steps, maximum=MAX_STEPS)
        if step_size is None:
            step_size = step_size_for(self.eps or 0.0, self.steps)
        self.step_size = check_float("Ensemble attack step_size", step_size)
        self.random_start = bool(random_start)
        if on_step is not None and not callable(on_step):
            raise TrendError("on_step must be a function (step, agreement) -> None.")
        self._on_step = on_step

    @property
    def name(self) -> str:  # type: ignore[override]  # the paper's label of the rule, e.g. "A-GD"
        return RULE_LABELS[self.rule]

    def run(
        self,
        model: nn.Module | Sequence[nn.Module],
        x: torch.Tensor,
        y: torch.Tensor,  # type: ignore[override]
        epsilons: Sequence[float | None],
        *,
        speedup: bool = False,
    ) -> list[AttackResult]:
        return super().run(as_ensemble(model, self.seed, self.profile), x, y, epsilons, speedup=speedup)

    def runner(self, model: nn.Module) -> nn.Module:
        """The same vote over each member's inference twin (the speed layer ``run(speedup=True)`` applies)."""
        if not isinstance(model, MajorityVote):
            return model
        return MajorityVote(
            [inference_twin(member) for member in model.members], model.seed, model.names, model.profile
        )

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        if not isinstance(model, MajorityVote):
            raise TrendError("Ensemble attacks need a MajorityVote ensemble (or a list of member models).")
        rule = RULES[self.rule]
        members = list(model.members)
        start_decision: list[torch.Tensor] = []  # the ensemble's decision at the start point (EMPIR)

        def direction(x_t: torch.Tensor, step: int) -> torch.Tensor:
            grads, preds = member_gradients(members, x_t, y)
            decision = None
            if self.rule == "empir":
                if self.empir_vote == "step":
                    decision = model.decide(preds, x_t)
                else:
                    if not start_decision:  # step 0 runs at the start point x_0
                        start_decision.append(model.decide(preds, x_t))
                    decision = start_decision[0]
            step_direction = rule(grads, preds, decision)
            if self._on_step is not None:
                self._on_step(step, sign_agreement(step_direction, grads).detach().cpu())
            return step_direction

        radius = (self.step_size if self._start == "step" else eps) if self.random_start else None
        return pgd_loop(
            x,
            direction,
            float(eps or 0.0),
            self.steps,
            self.step_size,
            self.norm,
            start_radius=radius,
            generator=generator,
        )


def agreement_trace(
    attack: EnsemblePGD,
    ensemble: MajorityVote | Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    speedup: bool = False,
) -> pd.DataFrame:
    """Run ``attack`` once and return its per-step agreement with every member: columns step, member, agreement."""
    ensemble = as_ensemble(ensemble, attack.seed, attack.profile)
    rows: list[dict] = []
    previous = attack._on_step

    def record(step: int, agreement: torch.Tensor) -> None:
        rows.extend({"step": step, "member": name, "agreement": float(v)} for name, v in zip(ensemble.names, agreement))

    attack._on_step = record
    try:
        attack.run(ensemble, x, y, [attack.eps], speedup=speedup)
    finally:
        attack._on_step = previous
    frame = pd.DataFrame(rows, columns=["step", "member", "agreement"])
    frame["rule"] = attack.rule
    return frame.groupby(["rule", "step", "member"], sort=False, as_index=False)["agreement"].mean()


# ----------------------------------------------------------------------------- gradient domination views
@dataclass
class GradientViews:
    """One image's view of gradient domination (the paper's Fig. 7); arrays are (C, H, W) float32.

    ``gradients``/``signs`` per member; ``dag``/``agd`` the two ensemble directions; ``dag_diff[i]`` /
    ``agd_diff[i]`` = direction - sign(G_i) (0 where they agree, +-1 or +-2 where not); ``agreement`` the
    fraction of agreeing coordinates per rule and member; ``gradient_norms`` each member's L2 gradient norm.
    """

    names: list[str]
    image: np.ndarray
    label: int
    gradients: list[np.ndarray]
    signs: list[np.ndarray]
    dag: np.ndarray
    agd: np.ndarray
    dag_diff: list[np.ndarray]
    agd_diff: list[np.ndarray]
    agreement: dict[str, list[float]]
    gradient_norms: list[float]

    def tiles(self) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
        """Rows of (title, array) tiles for ``plots.ensemble.image_tiles_figure``: one row per member."""
        rows = []
        for i, name in enumerate(self.names):
            rows.append(
                (
                    name,
                    [
                        ("gradient", self.gradients[i]),
                        ("sign", self.signs[i]),
                        ("D-AG - sign", self.dag_diff[i]),
                        ("A-GD - sign", self.agd_diff[i]),
                    ],
                )
            )
        rows.append(("ensemble", [("D-AG", self.dag), ("A-GD", self.agd)]))
        return rows

    def agreement_frame(self) -> pd.DataFrame:
        """Columns member, rule, agreement (for ``plots.ensemble.agreement_figure``)."""
        return pd.DataFrame(
            [
                {"member": name, "rule": rule, "agreement": values[i]}
                for rule, values in self.agreement.items()
                for i, name in enumerate(self.names)
            ]
        )


def gradient_views(
    ensemble: MajorityVote | Sequence[nn.Module], x: torch.Tensor, y: int | torch.Tensor
) -> GradientViews:
    """Each member's gradient and gradient sign at one clean image, the D-AG and A-GD directions and their
    differences from each member's sign, as arrays ready to show as images."""
    ensemble = as_ensemble(ensemble)
    image = x.detach()
    if image.dim() == 4:
        if len(image) != 1:
            raise TrendError(f"gradient_views takes one image, got a batch of {len(image)}.")
        image = image[0]
    if image.dim() != 3:
        raise TrendError(f"gradient_views takes one (C, H, W) image, got shape {tuple(x.shape)}.")
    device = model_device(ensemble)
    xb = image.unsqueeze(0).to(device)
    yb = torch.as_tensor(y).view(1).long().to(device)
    with attack_mode(ensemble):
        grads, _ = member_gradients(list(ensemble.members), xb, yb)
    dag, agd = dag_direction(grads), agd_direction(grads)
    signs = grads.sign()

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.squeeze(0).detach().float().cpu().numpy()

    return GradientViews(
        names=list(ensemble.names),
        image=arr(xb),
        label=int(yb.item()),
        gradients=[arr(g) for g in grads],
        signs=[arr(s) for s in signs],
        dag=arr(dag),
        agd=arr(agd),
        dag_diff=[arr(dag - s) for s in signs],
        agd_diff=[arr(agd - s) for s in signs],
        agreement={"dag": sign_agreement(dag, grads).tolist(), "agd": sign_agreement(agd, grads).tolist()},
        gradient_norms=[float(g.norm()) for g in grads],
    )
