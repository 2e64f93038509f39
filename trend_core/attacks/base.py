"""The contract every attack follows: ``attack(model, x, y) -> AttackResult``.

Images are pixels in [0, 1]; the model contains its own preprocessing (and BPDA), so an attack only needs
input gradients. Subclasses implement ``perturb`` (one eps, or none for minimum-norm attacks); this base
class handles eval mode, frozen parameters, devices, chunking, the success mask and the norms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from trend_core.config.datasets import get_info
from trend_core.data.image_checks import check_images
from trend_core.errors import TrendError
from trend_core.nn.twin import inference_twin
from trend_core.runtime.devices import model_device, predict  # noqa: F401  (re-exported: part of the attack API)


@dataclass
class AttackResult:
    """Adversarial images and per-image outcomes of one attack at one eps.

    Three rates, each with one meaning: ``clean_accuracy`` (share of all images the model gets right),
    ``robust_accuracy`` (share of all images it still gets right after the attack: the robustness figure) and
    ``success_rate`` (share of the images it got right that the attack turned wrong: the attack's strength).
    """

    x_adv: torch.Tensor
    success: torch.Tensor  # bool: the model was right on x and is wrong on x_adv
    clean_correct: torch.Tensor  # bool: the model was right on x
    l2: torch.Tensor  # per-image L2 norm of x_adv - x
    linf: torch.Tensor  # per-image L-inf norm of x_adv - x
    eps: float | None = None
    attack: str = ""

    @property
    def generated(self) -> int:
        """How many adversarial examples the attack made: images right before and wrong after."""
        return int(self.success.sum())

    @property
    def clean_accuracy(self) -> float:
        """Share of all images the model classifies correctly before the attack."""
        return float(self.clean_correct.float().mean()) if self.clean_correct.numel() else math.nan

    @property
    def robust_accuracy(self) -> float:
        """Share of all images the model still classifies correctly after the attack (wrong ones count as lost)."""
        still_right = self.clean_correct & ~self.success
        return float(still_right.float().mean()) if still_right.numel() else math.nan

    @property
    def success_rate(self) -> float:
        """Share of the correctly classified images that the attack turned wrong (NaN when none was right)."""
        right = int(self.clean_correct.sum())
        return self.generated / right if right else math.nan

    def summary(self) -> dict:
        """The rates above, counts, and mean norms over the successful (generated) images, as the paper reports."""
        ok = self.success
        n_ok = int(ok.sum())
        return {
            "attack": self.attack,
            "eps": self.eps,
            "images": int(ok.numel()),
            "clean_correct": int(self.clean_correct.sum()),
            "generated": n_ok,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "mean_l2": float(self.l2[ok].mean()) if n_ok else float("nan"),
            "mean_linf": float(self.linf[ok].mean()) if n_ok else float("nan"),
        }

    def __repr__(self) -> str:
        return (
            f"AttackResult(attack={self.attack!r}, eps={self.eps!r}, images={self.success.numel()}, "
            f"clean_accuracy={self.clean_accuracy:.3f}, robust_accuracy={self.robust_accuracy:.3f}, "
            f"success_rate={self.success_rate:.3f})"
        )


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients while attacking; the model's previous state is restored."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def autograd_ready(t: torch.Tensor) -> torch.Tensor:
    """``t``, copied if it was made under ``torch.inference_mode`` (such tensors cannot enter autograd)."""
    return t.clone() if t.is_inference() else t


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    delta = (x_adv - x).flatten(1)
    return delta.norm(p=2, dim=1), delta.abs().amax(dim=1)


def check_eps(eps: float | None, required: bool = True, norm: str = "linf") -> float | None:
    if eps is None:
        if required:
            raise TrendError("This attack needs an eps (the perturbation budget), e.g. eps=8/255.")
        return None
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise TrendError(f"eps must be a number, got {eps!r}.") from None
    if norm == "linf" and not (0 < value <= 1):
        raise TrendError(f"eps must be in (0, 1] (images live in [0, 1]), got {value}.")
    if not value > 0:
        raise TrendError(f"eps must be positive, got {value}.")
    if value == float("inf"):
        raise TrendError("eps must be finite; leave it out for an unbounded minimum-norm attack (CW, DeepFool).")
    return value


L2_EPS_SCALE = 4.0  # an L2 budget comparable to the dataset's L-inf one (the dashboard's long-standing choice)


def model_dataset(model: nn.Module) -> str | None:
    """The dataset ``model`` was built for: its spec's, or its members' common one (a vote); None if unknown."""
    dataset = getattr(getattr(model, "spec", None), "dataset", None)
    if dataset is not None:
        return str(dataset)
    members = getattr(model, "members", None)
    if isinstance(members, (list, tuple, nn.ModuleList)) and len(members):
        found = {model_dataset(m) for m in members}
        return found.pop() if len(found) == 1 else None
    return None


def dataset_eps(model: nn.Module, norm: str = "linf", attack: str = "This attack") -> float:
    """The default eps of ``model``'s dataset (digits 0.1, mnist 0.15, CIFAR 8/255; x L2_EPS_SCALE for an L2
    budget), or a TrendError asking for an explicit eps when the model carries no dataset."""
    dataset = model_dataset(model)
    if dataset is None:
        raise TrendError(
            f"{attack} was given no eps and the model carries no dataset to take its default eps from; "
            "give eps explicitly (e.g. eps=8/255 for CIFAR-sized images)."
        )
    return get_info(dataset).default_eps * (L2_EPS_SCALE if norm == "l2" else 1.0)


MAX_STEPS = 100_000  # iterations of one attack: far beyond any setting here (CW 100, PGD 40), short of days


def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum] (no upper bound by default), or a TrendError naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != value
        or value in (float("inf"), float("-inf"))
        or value != int(value)
        or value < minimum
    ):
        raise TrendError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise TrendError(f"{name} must be at most {maximum}, got {value!r}.")
    return int(value)


def check_float(name: str, value: object, minimum: float = 0.0, strict: bool = True) -> float:
    """``value`` as a finite float > minimum (or >= minimum when not strict), or a TrendError."""
    try:
        number = float(value)  # type: ignore[arg-type]  # (anything float() takes; the rest is refused below)
    except (TypeError, ValueError):
        raise TrendError(f"{name} must be a number, got {value!r}.") from None
    if (
        isinstance(value, bool)
        or number != number
        or number in (float("inf"), float("-inf"))
        or number < minimum
        or (strict and number == minimum)
    ):
        relation = ">" if strict else ">="
        raise TrendError(f"{name} must be a finite number {relation} {minimum}, got {value!r}.")
    return number


class Attack:
    """Base class. Subclasses set ``name``, store parameters in ``__init__`` and implement ``perturb``.

    ``eps=None`` on an eps-bounded attack means "the default eps of the attacked model's dataset" (see
    ``dataset_eps``), chosen when it runs: ``PGD()`` attacks a digits model at 0.1 and a CIFAR one at 8/255, and
    each result's ``eps`` says which. On a minimum-norm attack (CW, DeepFool) None means unbounded.
    """

    name = "attack"
    minimum_norm = False  # True: perturb() ignores eps; run() clips one minimum-norm result to each eps
    # True: perturb() may start from a point that is already perturbed, so an image that stops just across the
    # inference twin's boundary but not the model's (GPU TF32 rounding differs between them) is finished on
    # the model itself
    resumable = False
    norm = "linf"  # the norm of the eps-ball results are projected onto

    def __init__(self, eps: float | None = None, batch_size: int | None = None, seed: int = 0):
        self.eps = check_eps(eps, required=False, norm=self.norm)  # None: the dataset's default, at attack time
        self.batch_size = batch_size
        self.seed = seed

    # -- to implement ------------------------------------------------------------------------------
    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        raise NotImplementedError

    # -- public --------------------------------------------------------------------------------------
    def params(self) -> dict:
        """Every setting that changes the result: part of the cache key."""
        return {k: v for k, v in sorted(vars(self).items()) if not k.startswith("_") and k != "batch_size"}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({settings})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        """Attack images ``x`` (B, C, H, W) in [0, 1] with labels ``y`` (B,) at this attack's eps."""
        return self.run(model, x, y, [self.eps])[0]

    def eps_for(self, model: nn.Module, eps: float | None = None) -> float | None:
        """The budget a run on ``model`` uses for ``eps`` (checked): None means the dataset default for an
        eps-bounded attack, no clip for a minimum-norm one."""
        if eps is None and not self.minimum_norm:
            return dataset_eps(model, self.norm, type(self).__name__)
        return check_eps(eps, required=not self.minimum_norm, norm=self.norm)

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        epsilons: Sequence[float | None],
        *,
        speedup: bool = False,
    ) -> list[AttackResult]:
        """One result per eps. Minimum-norm attacks are computed once and clipped to each eps.

        ``speedup=True`` (what the runners pass: transfer runs, sweeps) iterates on ``runner(model)``, the
        model's cached inference twin, and still judges success on the model itself; by default the attack
        iterates on the model as given.
        """
        if len(x) != len(y):
            raise TrendError(f"Got {len(x)} images but {len(y)} labels.")
        if len(x):  # pixels outside [0, 1] (e.g. 0..255 floats) or NaN: one sentence, not a silent non-attack
            checked, y = check_images(x, y, argument="x", label_argument="y")
            x = x if x.is_floating_point() else checked  # (a float64 batch keeps its precision)
        if len(epsilons) == 0:
            raise TrendError("Give at least one eps.")
        epsilons = [self.eps_for(model, e) for e in epsilons]
        device = model_device(model)
        results: list[list[AttackResult]] = [[] for _ in epsilons]
        with attack_mode(model):
            runner = self.runner(model) if speedup else model  # success is always judged on the model
            for x_chunk, y_chunk in self._chunks(x, y):
                xd, yd = autograd_ready(x_chunk.to(device)), autograd_ready(y_chunk.to(device))
                clean_pred = predict(model, xd)
                unbounded_pred = None  # the model's predictions on the unbounded result, where known
                if self.minimum_norm:
                    unbounded = self._perturb_checked(runner, xd, yd, None)
                    if self.resumable and runner is not model:
                        unbounded, unbounded_pred = self._finish_on_model(model, runner, xd, yd, unbounded, clean_pred)
                    advs = [unbounded if e is None else clip_to_ball(xd, unbounded, e, self.norm) for e in epsilons]
                else:
                    advs = [self._perturb_checked(runner, xd, yd, e) for e in epsilons]
                for slot, (eps, adv) in enumerate(zip(epsilons, advs)):
                    known = unbounded_pred if eps is None else None
                    results[slot].append(self._result(model, xd, yd, adv, clean_pred, eps, x.device, known))
        return [merge_results(parts) for parts in results]

    def runner(self, model: nn.Module) -> nn.Module:
        """The network this attack iterates on: ``model``'s inference twin. A minimum-norm result sits on the
        model's decision boundary, so on a GPU, where TF32 convolutions round a BatchNorm-folded network ~1e-3
        differently from the model, it iterates on the unfolded twin, which rounds exactly like the model."""
        return inference_twin(model, fold=not (self.minimum_norm and model_device(model).type == "cuda"))

    # -- helpers ----------------------------------------------------------------------------------------
    def _chunks(self, x, y):
        size = self.batch_size or len(x) or 1
        for i in range(0, max(len(x), 1), size):
            yield x[i : i + size], y[i : i + size]

    def _perturb_checked(self, model, x, y, eps):
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        adv = self.perturb(model, x, y, eps, generator).detach()
        adv = adv.clamp(0, 1)
        if eps is not None:
            adv = clip_to_ball(x, adv, eps, self.norm)
        return adv

    def _finish_on_model(self, model, twin, x, y, adv, clean_pred) -> tuple[torch.Tensor, torch.Tensor]:
        """Continue, on the model itself, the images that fool the twin but not the model (not those that the
        attack failed on: they had their steps). Returns the images and the model's predictions on them."""
        adv_pred = predict_moved(model, x, adv, clean_pred)
        unfooled = ((clean_pred == y) & (adv_pred == y)).nonzero().squeeze(1)
        if unfooled.numel() == 0:
            return adv, adv_pred
        unfinished = unfooled[predict(twin, adv[unfooled]) != y[unfooled]]
        if unfinished.numel() == 0:
            return adv, adv_pred
        adv, adv_pred = adv.clone(), adv_pred.clone()
        adv[unfinished] = self._perturb_checked(model, adv[unfinished], y[unfinished], None)
        adv_pred[unfinished] = predict(model, adv[unfinished])
        return adv, adv_pred

    def _result(self, model, x, y, adv, clean_pred, eps, out_device, adv_pred=None) -> AttackResult:
        adv_pred = predict_moved(model, x, adv, clean_pred) if adv_pred is None else adv_pred
        clean_correct = clean_pred == y
        success = clean_correct & (adv_pred != y)
        l2, linf = perturbation_norms(x, adv)
        return AttackResult(
            adv.to(out_device),
            success.to(out_device),
            clean_correct.to(out_device),
            l2.to(out_device),
            linf.to(out_device),
            eps,
            self.name,
        )


def predict_moved(model: nn.Module, x: torch.Tensor, adv: torch.Tensor, clean_pred: torch.Tensor) -> torch.Tensor:
    """The model's predictions on ``adv``: computed for the images an attack moved, ``clean_pred`` for those it
    returned unchanged (a minimum-norm attack's failures, images misclassified from the start)."""
    moved = (adv != x).flatten(1).any(1).nonzero().squeeze(1)
    if moved.numel() == len(x):
        return predict(model, adv)
    adv_pred = clean_pred.clone()
    if moved.numel():
        adv_pred[moved] = predict(model, adv[moved])
    return adv_pred


def clip_to_ball(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Project x_adv onto the eps-ball around x (L-inf or L2) and the [0, 1] box."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        delta = delta * (eps / norms).clamp(max=1.0)
    return (x + delta).clamp(0, 1)


def merge_results(parts: list[AttackResult]) -> AttackResult:
    """Concatenate chunked results of one eps."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    fields = {
        f.name: torch.cat([getattr(p, f.name) for p in parts])
        for f in dataclasses.fields(AttackResult)
        if isinstance(getattr(first, f.name), torch.Tensor)
    }
    return AttackResult(**fields, eps=first.eps, attack=first.attack)
