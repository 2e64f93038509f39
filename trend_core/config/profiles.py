"""Method profiles: ``paper`` (the project's documented decisions) or ``authors`` (what the TREND authors' code does).

Every setting where the two differ lives in one frozen ``Profile``; engine functions take ``profile="paper"``
and look their settings up here, so a result computed under one profile never borrows a setting of the other.
The bugs fixed for issue #9 (DoReFa scale, HT normalization, ResNet activation placement, the VGG head, EMPIR's
vote timing) are not profile settings: both profiles get the corrected behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from trend_core.errors import TrendError

PROFILES = ("paper", "authors")
DEFAULT_PROFILE = "paper"


@dataclass(frozen=True)
class Profile:
    """Every setting that differs between the ``paper`` and ``authors`` profiles."""

    name: str
    # input quantization: bounds of the bins from the whole minibatch (the authors') or fixed per channel
    per_batch_range: bool
    # per-dataset (mean, std) replacing the dataset's own normalization; datasets not listed keep theirs
    normalization: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...]
    # majority vote: "any" breaks every tie at random; "all_disagree" only when every member votes differently
    vote_ties: str
    # ensemble attacks: default eps, and the random start's radius ("step": one step size; "eps": U(-eps, eps))
    ensemble_eps: float
    ensemble_start: str
    # CW abort-early: "relative" (ours: 0.01% over a tenth of the steps) or "advertorch" (their library's rule)
    cw_abort: str
    # training: batch size (None: the dataset's default) and Adam's learning rate when the spec keeps the default
    train_batch: int | None
    adam_lr: float | None
    adam_lr_vgg_bn: float | None
    # TM(eps) fit: default fit points (None: 4 spread over the dataset's range) and what f_ss counts
    tm_fit_eps: tuple[float, ...] | None
    tm_f_ss: str  # "common": images both models classify correctly; "source": every image the source gets right

    def normalization_for(
        self, dataset: str, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) this profile normalizes ``dataset`` with (``mean``/``std``: the dataset's own)."""
        for name, m, s in self.normalization:
            if name == dataset:
                return m, s
        return mean, std


_PROFILES = {
    "paper": Profile(
        name="paper",
        per_batch_range=False,
        normalization=(),
        vote_ties="any",
        ensemble_eps=8 / 255,
        ensemble_start="step",
        cw_abort="relative",
        train_batch=None,
        adam_lr=None,
        adam_lr_vgg_bn=None,
        tm_fit_eps=None,
        tm_f_ss="common",
    ),
    "authors": Profile(
        name="authors",
        per_batch_range=True,
        normalization=(
            ("cifar10", (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
            ("cifar100", (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
        ),
        vote_ties="all_disagree",
        ensemble_eps=0.01,
        ensemble_start="eps",
        cw_abort="advertorch",
        train_batch=512,
        adam_lr=1e-3,
        adam_lr_vgg_bn=1e-4,
        tm_fit_eps=(0.02, 0.04, 0.06, 0.08),
        tm_f_ss="source",
    ),
}


def get_profile(name: str | Profile | None = DEFAULT_PROFILE) -> Profile:
    """The profile called ``name`` (``paper`` or ``authors``; None means ``paper``); a TrendError otherwise."""
    if isinstance(name, Profile):
        return name
    key = DEFAULT_PROFILE if name is None else (name.strip().lower() if isinstance(name, str) else name)
    if key not in _PROFILES:
        raise TrendError(f"Unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    return _PROFILES[key]


def check_profile(name: str | Profile | None) -> str:
    """The canonical name of a profile, validated (for cache keys and specs)."""
    return get_profile(name).name
