"""Attack benchmark: our attacks against torchattacks 3.3 and against the hardware limit, in one run.

    python bench/attacks.py                  # CPU or CUDA (auto); about 10 minutes on a 2-core CPU
    python bench/attacks.py --quick          # smoke run with tiny sizes
    python bench/attacks.py --device cuda --batch 512
    python bench/attacks.py --setups cifar   # only one setup (digits, cifar, tm)

Two setups, each measured on one model and one batch: (a) a narrow ResNet18 (width 0.25) trained on digits,
loaded from (or trained once into) a bench zoo; (b) a full-width CIFAR-style ResNet18, untrained, on random
32x32 images labelled with its own predictions (so every image starts correctly classified). Every timing is
the fastest of ``--repeats`` runs, ours and theirs interleaved, both with the model in eval mode and its
parameters frozen. On the CPU it runs one thread and counts process CPU time, which other jobs on a shared
machine disturb far less than the wall clock. torchattacks' DeepFool loops over images, so it is timed on a
small slice of the batch and scaled per image (said in the output). Our attacks iterate on the model's
inference twin (trend_core/nn/twin.py) and judge success on the model; "bare fwd+bwd" rows are given for both.
DeepFool is also set against its compute floor: the image-steps it took, each costing one batched forward pass
and the gradients of all other classes (a CPU measure; a GPU is latency-bound on the small batches of the last
steps). With CUDA present it also prints PGD-40 images/s on the full-width CIFAR ResNet18 at batch 512 with
and without bf16 autocast. The "stacked" setup times PGD-40 on 4 same-architecture sources one at a time
against all 4 at once (attacks/stacked.py; on CUDA also with CUDA graphs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torchattacks  # noqa: E402

import trend_core.attacks.deepfool as deepfool_module  # noqa: E402
from trend_core.attacks import PGD, CarliniWagnerL2, DeepFool, predict  # noqa: E402
from trend_core.attacks.base import attack_mode, perturbation_norms  # noqa: E402
from trend_core.attacks.deepfool import candidate_gradients, other_top_classes  # noqa: E402
from trend_core.config.datasets import get_info  # noqa: E402
from trend_core.config.specs import ModelSpec  # noqa: E402
from trend_core.data.datasets import load_dataset  # noqa: E402
from trend_core.models.zoo import Zoo, preset_specs  # noqa: E402
from trend_core.nn.build import build_model  # noqa: E402
from trend_core.runtime.devices import resolve_device  # noqa: E402

DIGITS_MODEL = "digits/resnet18-w0.25/FP/sgd/s0"


@dataclass
class Row:
    setup: str
    measure: str
    value: float
    target: float | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        return "" if self.target is None else ("PASS" if self.value <= self.target else "MISS")


@dataclass
class Setup:
    name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    eps: float
    pgd_steps: int
    cw_steps: int
    deepfool_reference_images: int
    # CW's c per measurement; the first carries the target. torchattacks' CW stops early once its loss rises,
    # so a c that keeps it running measures iterations rather than the fixed clean/adversarial evaluation
    cw_constants: tuple[float, ...] = (1.0,)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> Callable[[], float]:
    """CPU time of this process on a one-thread CPU run (steady on a shared, loaded machine), else wall time."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.process_time
    return time.perf_counter


def fastest(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> tuple[dict, dict]:
    """Run each function ``repeats`` times, interleaved; return (best seconds, last output) per name."""
    best = {name: float("inf") for name in fns}
    out = {}
    now = clock(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = now()
            out[name] = fn()
            sync(device)
            best[name] = min(best[name], now() - start)
    return best, out


class ForwardCounter:
    """Counts forward passes through the given modules (to check that both sides ran the same iterations)."""

    def __init__(self, *modules: nn.Module):
        self.count = 0
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _hook(self, *_):
        self.count += 1

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


def reference_outcome(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor):
    success = (predict(model, x) == y) & (predict(model, x_adv) != y)
    return success, perturbation_norms(x, x_adv)[0]


def rate(success: torch.Tensor, correct: torch.Tensor) -> float:
    return float(success.sum()) / max(1, int(correct.sum()))


def bare_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], torch.Tensor]:
    """One bare forward + backward to the input: the least any gradient step must cost."""

    def run():
        with attack_mode(model):
            xg = x.detach().requires_grad_(True)
            return torch.autograd.grad(F.cross_entropy(model(xg), y), xg)[0]

    return run


def bench_pgd(s: Setup, repeats: int, device) -> list[Row]:
    ours = PGD(eps=s.eps, steps=s.pgd_steps, step_size=0.01)
    theirs = torchattacks.PGD(s.model, eps=s.eps, alpha=ours.step_size, steps=s.pgd_steps, random_start=True)

    def run_theirs():
        with attack_mode(s.model):
            return theirs(s.x, s.y)

    bare_runs = s.pgd_steps  # as long as the attack, so both meet the same machine load
    twin = ours.runner(s.model)
    times, out = fastest(
        {
            "ours": lambda: ours.run(s.model, s.x, s.y, [ours.eps], speedup=True)[0],
            "theirs": run_theirs,
            "bare": lambda: [bare_step(s.model, s.x, s.y)() for _ in range(bare_runs)],
            "bare twin": lambda: [bare_step(twin, s.x, s.y)() for _ in range(bare_runs)],
            "evaluation": evaluation(s),
        },
        repeats,
        device,
    )
    r_ours = out["ours"]
    t_success, _ = reference_outcome(s.model, s.x, s.y, out["theirs"])
    per_step = times["ours"] / s.pgd_steps
    bare, bare_twin = times["bare"] / bare_runs, times["bare twin"] / bare_runs
    note = (
        f"ours {times['ours']:.3f} s, torchattacks {times['theirs']:.3f} s, the success evaluation "
        f"{times['evaluation']:.3f} s; success ours {rate(r_ours.success, r_ours.clean_correct):.3f} / theirs "
        f"{rate(t_success, r_ours.clean_correct):.3f}"
    )
    return [
        Row(s.name, f"PGD-{s.pgd_steps} time ours / torchattacks", times["ours"] / times["theirs"], 1.0, note),
        like_for_like(s.name, f"PGD-{s.pgd_steps}", times),
        Row(
            s.name,
            "PGD s per step / bare fwd+bwd",
            per_step / bare,
            1.15,
            f"{per_step * 1e3:.2f} ms per step (whole attack incl. clean/adv evaluation) vs {bare * 1e3:.2f} ms "
            f"for the model as trained",
        ),
        Row(
            s.name,
            "PGD s per step / bare fwd+bwd of its twin",
            per_step / bare_twin,
            None,
            f"the loop's own overhead: the same bare pass through the inference twin (BatchNorm folded, "
            f"quantized weights precomputed) that the attack iterates on takes {bare_twin * 1e3:.2f} ms",
        ),
    ]


def evaluation(s: Setup) -> Callable[[], object]:
    """What our attacks add to torchattacks' work: predictions on the clean and on the adversarial batch."""
    return lambda: (predict(s.model, s.x), predict(s.model, s.x))


def like_for_like(setup: str, attack: str, times: dict) -> Row:
    """Ours against torchattacks plus the two forward passes that give our AttackResult its success mask."""
    return Row(
        setup,
        f"{attack} ours / (torchattacks + evaluation)",
        times["ours"] / (times["theirs"] + times["evaluation"]),
        1.0,
        "the same work on both sides: adversarial images and which of them fool the model",
    )


def bench_deepfool(s: Setup, repeats: int, device) -> list[Row]:
    n_ref = min(s.deepfool_reference_images, len(s.x))
    x_ref, y_ref = s.x[:n_ref], s.y[:n_ref]
    ours = DeepFool(steps=50, overshoot=0.02)
    theirs = torchattacks.DeepFool(s.model, steps=50, overshoot=0.02)

    def run_theirs():
        with attack_mode(s.model):
            return theirs(x_ref, y_ref)

    work = DeepFoolWork(ours.runner(s.model))
    try:
        times, out = fastest(
            {
                "ours": lambda: (ours.run(s.model, s.x, s.y, [ours.eps], speedup=True)[0], work.take()),
                "theirs": run_theirs,
                "step": one_deepfool_step(s, backward=True),
                "forward": one_deepfool_step(s, False),
                "evaluation": evaluation(s),
            },
            min(repeats, 2),
            device,
        )
    finally:
        work.remove()
    r, (forward_rows, gradient_rows) = out["ours"]
    t_success, t_l2 = reference_outcome(s.model, x_ref, y_ref, out["theirs"])
    theirs_full = times["theirs"] * len(s.x) / n_ref
    ours_ref_rate = rate(r.success[:n_ref], r.clean_correct[:n_ref])
    theirs_ref_rate = rate(t_success, r.clean_correct[:n_ref])
    ratio = times["ours"] / theirs_full
    equal_or_better = ours_ref_rate >= theirs_ref_rate
    note = (
        f"ours {times['ours']:.3f} s on {len(s.x)} images; torchattacks {times['theirs']:.3f} s on the first "
        f"{n_ref}, scaled per image to {theirs_full:.2f} s; success on those {n_ref}: ours {ours_ref_rate:.3f} "
        f"(mean L2 {float(r.l2[:n_ref][r.success[:n_ref]].mean()):.4f}) vs theirs {theirs_ref_rate:.3f} "
        f"(mean L2 {float(t_l2[t_success].mean()):.4f}); ours on all {len(s.x)}: "
        f"{rate(r.success, r.clean_correct):.3f}"
    )
    row = Row(s.name, "DeepFool time ours / torchattacks", ratio, 0.1, note)
    if not equal_or_better:
        row.target = -1.0  # a faster attack that fools fewer images does not pass
        row.note += " -- LOWER SUCCESS"
    per_step, per_forward = times["step"] / len(s.x), times["forward"] / len(s.x)
    floor = gradient_rows * per_step + (forward_rows - gradient_rows) * per_forward + times["evaluation"]
    floor_row = Row(
        s.name,
        "DeepFool time ours / its compute floor",
        times["ours"] / floor,
        None,
        f"the floor: {gradient_rows} image-steps x {per_step * 1e3:.2f} ms (a forward pass and the "
        f"gradients of all 9 other classes, batched) + {forward_rows - gradient_rows} forward-only rows "
        f"x {per_forward * 1e3:.2f} ms + the clean/adversarial evaluation = {floor:.3f} s",
    )
    return [row, floor_row]


class DeepFoolWork:
    """Counts the image rows of our DeepFool's forward passes and of its gradient computations."""

    def __init__(self, twin: nn.Module):
        self.forward_rows = self.gradient_rows = 0
        self.handle = twin.register_forward_hook(self._forward)
        self.original = deepfool_module.candidate_gradients

        def counted(x, *args):
            self.gradient_rows += len(x)
            return self.original(x, *args)

        deepfool_module.candidate_gradients = counted

    def _forward(self, _module, inputs, _output):
        self.forward_rows += len(inputs[0])

    def take(self) -> tuple[int, int]:
        counts = (self.forward_rows, self.gradient_rows)
        self.forward_rows = self.gradient_rows = 0
        return counts

    def remove(self) -> None:
        self.handle.remove()
        deepfool_module.candidate_gradients = self.original


def one_deepfool_step(s: Setup, backward: bool) -> Callable[[], object]:
    """One DeepFool step's unavoidable work for the whole batch, through the twin that our DeepFool iterates
    on: a forward pass and (``backward``) the input gradients of the logit differences to all other classes."""
    twin = DeepFool().runner(s.model)

    def run():
        with attack_mode(s.model):
            x = s.x.detach().requires_grad_(True)
            logits = twin(x)
            if not backward:
                return logits
            others = other_top_classes(logits.detach(), s.y, logits.shape[1])
            return candidate_gradients(x, logits, s.y, others)[1]

    return run


def cw_f_on_device(self, outputs, labels):
    """torchattacks 3.3 CW's f, unchanged except that its one-hot matrix is made on the logits' device
    (the original indexes a CPU matrix with CUDA labels, which fails on CUDA)."""
    one_hot_labels = torch.eye(outputs.shape[1], device=outputs.device)[labels]
    i, _ = torch.max((1 - one_hot_labels) * outputs, dim=1)
    j = torch.masked_select(outputs, one_hot_labels.bool())
    return torch.clamp((i - j) if self.targeted else (j - i), min=-self.kappa)


def bench_cw(s: Setup, repeats: int, device) -> list[Row]:
    rows = []
    for i, c in enumerate(s.cw_constants):
        rows += bench_cw_at(s, c, repeats, device, with_target=i == 0)
    return rows


def bench_cw_at(s: Setup, c: float, repeats: int, device, with_target: bool) -> list[Row]:
    if device.type != "cpu":
        torchattacks.CW.f = cw_f_on_device
    theirs = torchattacks.CW(s.model, c=c, kappa=0, steps=s.cw_steps, lr=0.01)

    def run_theirs():
        with attack_mode(s.model):
            return theirs(s.x, s.y)

    def run_ours(iterations: int):
        attack = CarliniWagnerL2(
            kappa=0, steps=iterations, lr=0.01, binary_search_steps=1, initial_c=c, abort_early=False
        )
        return attack.run(s.model, s.x, s.y, [None], speedup=True)[0]  # the runners' speed layer

    # Paired runs: torchattacks' early stop can come at a different iteration from one run to the next (on a
    # GPU, TF32 rounding moves its loss), so each of our runs takes the iteration count of the run before it;
    # the least disturbed pair (smallest sum) counts.
    # torchattacks runs the model; ours iterates on the network its runner() picks
    on_model, on_twin = ForwardCounter(s.model), ForwardCounter(CarliniWagnerL2().runner(s.model))
    pairs = []
    try:
        run_theirs()  # warm-up
        run_ours(on_model.take())
        on_twin.take()
        for _ in range(repeats):
            pair, out = fastest({"theirs": run_theirs}, 1, device)
            their_forwards = on_model.take()
            mine, mine_out = fastest({"ours": lambda: run_ours(their_forwards), "evaluation": evaluation(s)}, 1, device)
            on_model.take()
            pairs.append(({**pair, **mine}, out["theirs"], mine_out["ours"], their_forwards, on_twin.take()))
    finally:
        on_model.remove()
        on_twin.remove()
    times, t_adv, r, their_forwards, ours_forwards = min(pairs, key=lambda p: p[0]["ours"] + p[0]["theirs"])
    iterations = their_forwards
    t_success, t_l2 = reference_outcome(s.model, s.x, s.y, t_adv)
    stopped = f" (torchattacks stopped early after {iterations} of {s.cw_steps})" if iterations < s.cw_steps else ""
    note = (
        f"c={c:g}: ours {times['ours']:.3f} s ({ours_forwards} iterations + clean/adversarial evaluation), "
        f"torchattacks {times['theirs']:.3f} s ({their_forwards} iterations){stopped}; success ours "
        f"{rate(r.success, r.clean_correct):.3f} / theirs {rate(t_success, r.clean_correct):.3f}; mean L2 ours "
        f"{float(r.l2[r.success].mean()):.4f} / theirs {float(t_l2[t_success].mean()):.4f}"
    )
    if not with_target:
        note += (
            "; shown without a target: this few iterations mostly time the two evaluation passes that "
            "torchattacks does not make (see the like-for-like row)"
        )
    rows = [
        Row(
            s.name,
            f"CW-{iterations} time ours / torchattacks",
            times["ours"] / times["theirs"],
            1.0 if with_target else None,
            note,
        ),
        like_for_like(s.name, f"CW-{iterations}", times),
    ]
    if not with_target:
        rows[1].target = None
    return rows


def bench_transfer(
    models: list[nn.Module], x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, repeats: int, device
) -> list[Row]:
    try:
        from trend_core.experiments.transfer import run_transfer
    except ImportError:
        return [
            Row(
                "digits 6 models",
                "TM matrix / (6 x one PGD)",
                float("nan"),
                1.25,
                "trend_core.experiments.transfer.run_transfer is missing: not measured",
            )
        ]
    attack = PGD(eps=eps, steps=steps)
    singles = {f"pgd{i}": (lambda m=m: attack(m, x, y)) for i, m in enumerate(models)}
    times, _ = fastest(
        {**singles, "matrix": lambda: run_transfer(models, attack, data=(x, y), cache=None, device=str(device))},
        repeats,
        device,
    )
    one_each = sum(times[k] for k in singles)
    note = (
        f"run_transfer {times['matrix']:.3f} s (6 attacks + 30 evaluations, no disk cache) vs "
        f"the 6 PGD attacks alone {one_each:.3f} s"
    )
    return [Row("digits 6 models", f"TM matrix / (6 x one PGD-{steps})", times["matrix"] / one_each, 1.25, note)]


def bench_throughput(device, batch: int, steps: int = 40) -> list[Row]:
    model = build_model(ModelSpec(dataset="cifar10", arch="resnet18")).to(device).eval()
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g).to(device)
    y = predict(model, x).clone()  # (an inference-mode tensor cannot enter autograd)
    rows = []
    for autocast in (False, True):
        attack = PGD(eps=8 / 255, steps=steps, autocast=autocast)
        attack(model, x[:8], y[:8])  # warm-up (cuDNN autotuning, autocast caches)
        times, _ = fastest({"pgd": lambda: attack(model, x, y)}, 2, device)
        rows.append(
            Row(
                f"CIFAR RN18 b{batch}",
                f"PGD-{steps} images/s, bf16 autocast={autocast}",
                batch / times["pgd"],
                None,
                f"{times['pgd']:.3f} s per batch",
            )
        )
    return rows


STACKED_SPECS = ("FP/sgd/s0", "FP/sgd/s1", "Q2/sgd/s0", "FP-W2/sgd/s0")  # one stackable group (same network)


def bench_stacked(device, batches: tuple[int, ...], steps: int, repeats: int) -> list[Row]:
    """PGD-``steps`` over 4 same-architecture sources: one at a time (as a transfer run attacks them without
    stacking) against one stacked run (attacks/stacked.py), in source-images/s; untrained models, for the time.
    On CUDA also stacked with CUDA graphs, each run paying its own capture (as one transfer run's group does)."""
    from trend_core.attacks.stacked import stacked_groups  # (bench-only section)

    arches = [("digits", "resnet18-w0.25", 0.1)]
    if device.type == "cuda":
        arches.append(("cifar10", "resnet18-w0.25", 8 / 255))
    rows = []
    for dataset, arch, eps in arches:
        models = [build_model(ModelSpec.parse(f"{dataset}/{arch}/{s}")).to(device).eval() for s in STACKED_SPECS]
        attack = PGD(eps=eps, steps=steps)
        assert stacked_groups(attack, models) == [list(range(len(models)))]
        for batch in batches:
            x = torch.rand(batch, *get_info(dataset).input_shape, generator=torch.Generator().manual_seed(0))
            x = x.to(device)
            y = predict(models[0], x).clone()
            for warm_up in stacked_or_alone(PGD(eps=eps, steps=2), models, x, y, eps).values():
                warm_up()  # twins built, cuDNN tuned
            runs = stacked_or_alone(attack, models, x, y, eps)
            times, out = fastest(runs, repeats, device)
            gap = max(float((a.x_adv - b.x_adv).abs().max()) for a, b in zip(out["alone"], out["stacked"]))
            name = f"{dataset} {arch} x{len(models)} b{batch}"
            for how in runs:
                rows.append(
                    Row(
                        name,
                        f"PGD-{steps} source-images/s, {how}",
                        len(models) * batch / times[how],
                        None,
                        f"{times[how]:.3f} s for the {len(models)} sources",
                    )
                )
            rows.append(
                Row(
                    name,
                    "stacked speedup (x)",
                    times["alone"] / min(times[h] for h in runs if h != "alone"),
                    None,
                    f"best stacked run; largest pixel gap stacked vs one at a time: {gap:.1e}",
                )
            )
    return rows


def stacked_or_alone(attack: PGD, models: list[nn.Module], x: torch.Tensor, y: torch.Tensor, eps: float) -> dict:
    from trend_core.attacks.stacked import run_stacked  # (bench-only section)

    runs = {
        "alone": lambda: [attack.run(m, x, y, [eps], speedup=True)[0] for m in models],
        "stacked": lambda: [r[0] for r in run_stacked(attack, models, x, y, [eps], graphs=False)],
    }
    if x.device.type == "cuda":  # the stacked step replayed from CUDA graphs (captured in the warm-up run)
        runs["stacked+graphs"] = lambda: [r[0] for r in run_stacked(attack, models, x, y, [eps], graphs=True)]
    return runs


def digits_setup(zoo: Zoo, device, batch: int, quick: bool) -> Setup:
    model = zoo.get_or_train(DIGITS_MODEL, device=device).to(device).eval()
    x, y = load_dataset("digits").tensors("test", limit=min(batch, 360))
    return Setup(
        f"digits RN18-w0.25 b{len(x)}",
        model,
        x.to(device),
        y.to(device),
        eps=0.1,
        pgd_steps=10 if quick else 40,
        cw_steps=10 if quick else 100,
        deepfool_reference_images=8 if quick else 24,
    )


def cifar_setup(device, batch: int, quick: bool) -> Setup:
    model = build_model(ModelSpec(dataset="cifar10", arch="resnet18")).to(device).eval()
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g).to(device)
    y = predict(model, x).clone()  # (an inference-mode tensor cannot enter autograd)
    on_cpu = device.type == "cpu"
    return Setup(
        f"CIFAR RN18 (full width) b{batch}",
        model,
        x,
        y,
        eps=8 / 255,
        pgd_steps=3 if quick else 40,
        cw_steps=3 if quick else 100,
        deepfool_reference_images=2 if quick else (4 if on_cpu else 16),
        # untrained: near-tied logits, so at c=1 torchattacks stops after ~11 of 100 iterations
        cw_constants=(10.0, 1.0),
    )


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'setup':34s} {'measure':40s} {'value':>9s} {'target':>8s}  verdict")
    print("-" * 102)
    for r in rows:
        target = "" if r.target is None else ("equal+" if r.target < 0 else f"<= {r.target:g}")
        print(f"{r.setup:34s} {r.measure:40s} {r.value:9.3f} {target:>8s}  {r.verdict}")
        if r.note:
            print(f"{'':34s}   {r.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="images per batch (default: digits 256 / CIFAR 16 on CPU, 360 / 512 on CUDA)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (fastest counts)")
    parser.add_argument(
        "--setups",
        default="digits,cifar,tm,stacked",
        help="comma-separated subset of: digits, cifar, tm (the TM matrix of 6 digits models), "
        "stacked (PGD on 4 same-architecture sources, one at a time vs stacked)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: 1 on CPU, timed by process CPU time, which a shared, "
        "loaded machine disturbs least; more threads are timed by the wall clock)",
    )
    parser.add_argument(
        "--zoo",
        default=str(Path(tempfile.gettempdir()) / "trend-bench-zoo"),
        help="where the digits models are trained once and then loaded from",
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    chosen = {name.strip() for name in args.setups.split(",") if name.strip()}
    if not chosen or chosen - {"digits", "cifar", "tm", "stacked"}:
        parser.error("--setups takes a comma-separated subset of: digits, cifar, tm, stacked")
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    on_cpu = device.type == "cpu"
    repeats = args.repeats or (2 if args.quick else 3)  # the fastest run counts; the first also warms up
    digits_batch = args.batch or (32 if args.quick else (256 if on_cpu else 360))
    cifar_batch = args.batch or (4 if args.quick else (16 if on_cpu else 512))
    torch.manual_seed(0)
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if on_cpu else ""
    gpu = "" if on_cpu else f" ({torch.cuda.get_device_name(device)})"
    timer = "process CPU time" if clock(device) is time.process_time else "wall"
    print(
        f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, device {device}{gpu}, "
        f"threads {torch.get_num_threads()}, repeats {repeats}{load}; clock: {timer}"
    )
    zoo = Zoo(args.zoo)
    rows: list[Row] = []
    makers = {
        "digits": lambda: digits_setup(zoo, device, digits_batch, args.quick),
        "cifar": lambda: cifar_setup(device, cifar_batch, args.quick),
    }
    for name in [n for n in makers if n in chosen]:
        setup = makers[name]()
        print(f"== {setup.name}", flush=True)
        for bench in (bench_pgd, bench_deepfool, bench_cw):
            rows += bench(setup, repeats, device)
            print(f"   {rows[-1].measure}: {rows[-1].value:.3f}", flush=True)
    if "tm" in chosen:
        print("== digits: TM matrix of 6 models", flush=True)
        models = [zoo.get_or_train(spec, device=device).to(device).eval() for spec in preset_specs("digits")[:6]]
        x, y = load_dataset("digits").tensors("test", limit=digits_batch)
        rows += bench_transfer(models, x.to(device), y.to(device), 0.1, 10 if args.quick else 40, repeats, device)
    if "stacked" in chosen:
        print("== stacked sources: PGD on 4 same-architecture models at once vs one at a time", flush=True)
        if on_cpu:
            print("   no GPU present: CPU figures only (stacking is off by default on the CPU)", flush=True)
        batches = (16,) if args.quick else ((64,) if on_cpu else (32, 256))
        rows += bench_stacked(device, batches, 5 if args.quick else 40, repeats)
    if not on_cpu:
        print("== CUDA throughput", flush=True)
        rows += bench_throughput(device, 64 if args.quick else 512)
    print_table(rows)


if __name__ == "__main__":
    main()
