"""PGD on several same-architecture sources at once: one batched forward+backward per step instead of K.

Small models on small batches leave a GPU mostly idle, launching kernels. ``run_stacked`` stacks the sources'
inference twins' weights (``stack_tensors``), runs them as one ``vmap`` of ``functional_call`` over K
copies of the batch (each model's own input transform, BPDA included, applied to its copy outside the vmap)
and lets the one PGD loop (``pgd.pgd_loop``) walk all K copies together, every copy from the random start a
one-at-a-time run draws. Each source's result is judged on the source itself, as ``Attack.run`` does, so the
outcome equals ``attack.run(model, x, y, epsilons, speedup=True)`` per model up to float rounding.

Twins stack when their networks are the same graph of the same layers with tensors of the same shapes
(``stack_key``): same architecture, width and activation bits (the twins hold their weights already
DoReFa-quantized, so weight bits may differ), every layer in eval mode. Anything else, or a network that vmap
cannot run, is attacked one at a time. Stacking is on by default on CUDA only (``stacking_wanted``); the
environment variable TREND_STACK_SOURCES=on/off forces it either way (on: also on the CPU, as the tests do).
On CUDA, TREND_STACK_GRAPHS=on also replays each stacked forward and backward from CUDA graphs (``GraphedNets``),
checked against the eager pass once per batch shape, eager wherever capture fails.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from itertools import chain
from typing import Callable, Sequence, TypeGuard, cast

import torch
import torch.fx as fx
import torch.nn as nn
from torch.func import functional_call, vmap

from trend_core.attacks.base import AttackResult, attack_mode, autograd_ready, clip_to_ball, merge_results, predict
from trend_core.attacks.pgd import PGD, gradient_direction, input_gradient, pgd_loop, random_start_point, step_size_for
from trend_core.data.image_checks import check_images
from trend_core.errors import TrendError
from trend_core.nn.build import TrendModel
from trend_core.runtime.devices import model_device

log = logging.getLogger(__name__)
STACK_ENV = "TREND_STACK_SOURCES"
STACK_CHOICES = ("auto", "on", "off")
GRAPHS_ENV = "TREND_STACK_GRAPHS"


def stacking_wanted(device: torch.device | str) -> bool:
    """Whether runs on ``device`` stack sources: TREND_STACK_SOURCES=on or off, else (auto) on CUDA only,
    where one source's attack leaves the GPU idle; on the CPU K models cost K times the arithmetic anyway."""
    choice = os.environ.get(STACK_ENV, "auto").strip().lower() or "auto"
    if choice in ("on", "1", "true", "yes"):
        return True
    if choice in ("off", "0", "false", "no"):
        return False
    if choice != "auto":
        raise TrendError(f"{STACK_ENV} must be one of {', '.join(STACK_CHOICES)}, got {choice!r}.")
    return torch.device(device).type == "cuda"


def stackable_attack(attack: object) -> TypeGuard[PGD]:
    """Only plain PGD is stacked (a subclass may change what one step does)."""
    return type(attack) is PGD


def stack_key(runner: nn.Module) -> tuple | None:
    """What two runners must share to run as one vmap: their network's layers (type and settings, eval mode),
    its traced graph if any, and every tensor's name, shape, dtype and device; None if it cannot be stacked."""
    if not isinstance(runner, TrendModel):
        return None
    net = runner.net
    if any(m.training for m in net.modules()):
        return None  # BatchNorm in training mode would update its statistics per source
    layers = tuple((name, type(m).__qualname__, m.extra_repr()) for name, m in net.named_modules())
    graph = net.code if isinstance(net, fx.GraphModule) else ""
    tensors = tuple(
        (name, tuple(t.shape), t.dtype, str(t.device)) for name, t in chain(net.named_parameters(), net.named_buffers())
    )
    return layers, graph, tensors


def group_by_key(keys: Sequence[tuple | None]) -> list[list[int]]:
    """Positions grouped by equal keys, in first-seen order; a None key stays alone."""
    groups: dict[object, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(("alone", i) if key is None else key, []).append(i)
    return list(groups.values())


class StackedNets(nn.Module):
    """K runners as one module: input (K*B, C, H, W) holding copy k of a batch in slice k, output (K*B, classes).

    Copy k goes through runner k's own preprocessing (outside the vmap: halftoning and per-batch ranges are
    batch-shaped code), then all K networks run as one vmap over their stacked parameters and buffers.
    """

    def __init__(self, runners: Sequence[TrendModel]):
        super().__init__()
        self.preprocesses = list(runners)  # plain list: the runners stay owned by their models
        self.count = len(runners)
        self.weights = stack_tensors([dict(r.net.named_parameters()) for r in runners])
        self.states = stack_tensors([dict(r.net.named_buffers()) for r in runners])
        self.base = copy.deepcopy(runners[0].net)  # a private module for functional_call to swap tensors into

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.view(self.count, -1, *x.shape[1:])
        z = torch.stack([r.preprocess(part) for r, part in zip(self.preprocesses, parts)])
        logits = vmap(self._one)(self.weights, self.states, z)
        return logits.flatten(0, 1)

    def _one(self, params: dict, buffers: dict, z: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (z,))


def stack_tensors(named: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each name's tensors stacked along a new first dimension (``torch.func.stack_module_state`` by name: it
    refuses traced twins, whose GraphModule classes differ per instance even for one graph)."""
    return {name: torch.stack([tensors[name].detach() for tensors in named]) for name in named[0]}


class GraphedNets(nn.Module):
    """A StackedNets whose forward and backward replay CUDA graphs (one capture per input shape): a PGD step on
    small models is kernel-launch bound, and a replay launches the whole network at once. A shape that cannot
    be captured, or whose replay disagrees with the eager pass on the capture batch, runs eagerly."""

    def __init__(self, stacked: StackedNets):
        super().__init__()
        self.stacked = stacked
        self.count = stacked.count
        self.graphed: dict[tuple, Callable | None] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        if key not in self.graphed:
            self.graphed[key] = capture(self.stacked, x)
        run = self.graphed[key]
        return run(x) if run is not None else self.stacked(x)


def capture(stacked: StackedNets, x: torch.Tensor) -> Callable | None:
    """``stacked`` as a CUDA-graphed callable for inputs shaped like ``x``, checked against the eager pass; None
    when capture fails (e.g. HT-FS's data-dependent loop) or the replay's gradients differ."""
    try:
        sample = x.detach().clone().requires_grad_(True)
        graphed = cast(Callable, torch.cuda.make_graphed_callables(lambda t: stacked(t), (sample,)))
        probes = []
        for net in (graphed, stacked):
            probe = x.detach().clone().requires_grad_(True)
            logits = net(probe)
            (grad,) = torch.autograd.grad(logits.square().sum(), probe)
            probes.append((logits.detach().clone(), grad))
        (logits_g, grad_g), (logits_e, grad_e) = probes
        if torch.allclose(logits_g, logits_e, rtol=1e-4, atol=1e-5) and torch.allclose(
            grad_g, grad_e, rtol=1e-3, atol=1e-5
        ):
            return graphed
        log.warning("CUDA-graph replay disagreed with the eager pass; stacked sources run eagerly")
    except Exception as error:  # noqa: BLE001 - any capture failure: the eager pass computes the same thing
        log.warning("stacked sources run eagerly: CUDA-graph capture failed (%s)", error)
    return None


def graphs_wanted(device: torch.device | str, attack: PGD) -> bool:
    """CUDA graphs for stacked steps: only on CUDA, never under bf16 autocast (captured kernels are float32),
    and only where TREND_STACK_GRAPHS=on asks (a capture costs warm-up passes a short run does not win back)."""
    choice = os.environ.get(GRAPHS_ENV, "off").strip().lower()
    return torch.device(device).type == "cuda" and not attack.autocast and choice in ("on", "1", "true", "yes")


def run_stacked(
    attack: PGD,
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float | None],
    graphs: bool | None = None,
) -> list[list[AttackResult]]:
    """``attack.run(model, x, y, epsilons, speedup=True)`` for every model (results per model, then per eps),
    with stackable models' PGD iterations batched together; the rest (and any group vmap fails on, or that runs
    out of memory) one at a time. All models must live on one device. ``graphs``: replay the steps from CUDA
    graphs (None: ``graphs_wanted``; never off CUDA)."""
    if not stackable_attack(attack):
        raise TrendError(f"Only PGD can be stacked over sources, not {type(attack).__name__}.")
    models = list(models)
    results: list[list[AttackResult] | None] = [None] * len(models)
    with contextlib.ExitStack() as modes:
        for model in models:
            modes.enter_context(attack_mode(model))
        runners = [attack.runner(m) for m in models]
        for group in group_by_key([stack_key(r) for r in runners]):
            done = None
            if len(group) > 1:
                members = [models[i] for i in group]
                done = _try_stacked(attack, members, [runners[i] for i in group], x, y, epsilons, graphs)
            for slot, i in enumerate(group):
                results[i] = done[slot] if done is not None else attack.run(models[i], x, y, epsilons, speedup=True)
    return [r for r in results if r is not None]


def stacked_groups(attack: object, models: Sequence[nn.Module]) -> list[list[int]]:
    """How ``run_stacked`` would group ``models`` (positions): groups of two or more run as one."""
    if not stackable_attack(attack):
        return [[i] for i in range(len(models))]
    with contextlib.ExitStack() as modes:
        for model in models:
            modes.enter_context(attack_mode(model))
        return group_by_key([stack_key(attack.runner(m)) for m in models])


def _try_stacked(attack: PGD, models, runners, x, y, epsilons, graphs) -> list[list[AttackResult]] | None:
    """The group's results, or None when vmap cannot run this network (the caller then goes one at a time)."""
    try:
        return _run_group(attack, models, StackedNets(runners), x, y, epsilons, graphs)
    except (RuntimeError, NotImplementedError) as error:  # vmap refusing a layer (TrendErrors are ValueErrors)
        names = ", ".join(getattr(m, "name", type(m).__name__) for m in models)
        log.warning("attacking %s one at a time: they could not be stacked (%s)", names, error)
        return None


def _run_group(attack: PGD, models, stacked: StackedNets, x, y, epsilons, graphs) -> list[list[AttackResult]]:
    if len(x) != len(y):
        raise TrendError(f"Got {len(x)} images but {len(y)} labels.")
    if len(x):
        checked, y = check_images(x, y, argument="x", label_argument="y")
        x = x if x.is_floating_point() else checked
    per_model_eps = [[attack.eps_for(m, e) for e in epsilons] for m in models]
    if any(eps != per_model_eps[0] for eps in per_model_eps):
        raise RuntimeError("the sources resolve eps differently")  # (different datasets: one at a time)
    eps_list = per_model_eps[0]
    device = model_device(models[0])
    wanted = graphs_wanted(device, attack) if graphs is None else graphs and device.type == "cuda"
    runner: nn.Module = GraphedNets(stacked) if wanted else stacked
    parts: list[list[list[AttackResult]]] = [[[] for _ in eps_list] for _ in models]
    for x_chunk, y_chunk in attack._chunks(x, y):
        xd, yd = autograd_ready(x_chunk.to(device)), autograd_ready(y_chunk.to(device))
        clean = [predict(m, xd) for m in models]
        for slot, eps in enumerate(eps_list):
            advs = perturb_stacked(attack, runner, xd, yd, float(eps or 0.0))
            for k, model in enumerate(models):
                parts[k][slot].append(attack._result(model, xd, yd, advs[k], clean[k], eps, x.device))
    return [[merge_results(p) for p in per_eps] for per_eps in parts]


def perturb_stacked(attack: PGD, stacked: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """(K, B, C, H, W): copy k of batch x after PGD on network k, each copy from the random start that
    ``attack`` draws for x on its own (same seed, same generator), clipped as ``Attack.run`` clips."""
    k = int(getattr(stacked, "count", 1))
    generator = torch.Generator(device=x.device).manual_seed(attack.seed)
    start = x
    if attack.random_start and eps:
        start = clip_to_ball(x, random_start_point(x, eps, attack.norm, generator), eps, attack.norm)

    def tile(t: torch.Tensor) -> torch.Tensor:
        return t.repeat(k, *[1] * (t.dim() - 1))

    labels = tile(y)
    step_size = step_size_for(eps, attack.steps) if attack.step_size is None else attack.step_size
    direction = _direction(stacked, labels, attack)
    x_all = tile(x)
    adv = pgd_loop(x_all, direction, eps, attack.steps, step_size, attack.norm, start=tile(start))
    adv = clip_to_ball(x_all, adv.detach().clamp(0, 1), eps, attack.norm)
    return adv.view(k, *x.shape)


def _direction(stacked: nn.Module, labels: torch.Tensor, attack: PGD) -> Callable[[torch.Tensor, int], torch.Tensor]:
    def direction(x_t: torch.Tensor, _step: int) -> torch.Tensor:
        return gradient_direction(input_gradient(stacked, x_t, labels, attack.autocast), attack.norm)

    return direction
