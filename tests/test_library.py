"""The library front door: the README's notebook example, the lazy top-level API, discovery, reprs, the RNG left
alone by loading, cache= semantics, with_preprocessing (BPDA), one source of attack settings, engine helpers that
used to live in pages, and the store keeping (and logging) entries it cannot read."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import diskcache
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import FP, Q1, Q2, REPO

import trend_core as tl
from trend_core.attacks.registry import _FACTORIES
from trend_core.errors import TrendError


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_example_is_five_lines_and_prints_the_tm_matrix(linked_zoo_home, capsys):
    code = readme_python_example()
    assert len([line for line in code.strip().splitlines() if line.strip()]) <= 5  # (ruff's blank line aside)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102  (the README's own example, run as a user would)
    printed = capsys.readouterr().out
    assert "FP-s0" in printed and "Q1-s0" in printed and "row_avg" in printed
    numbers = [float(v) for v in re.findall(r"\d+\.\d+", printed)]
    assert numbers and all(0.0 <= v <= 1.0 for v in numbers) and 1.0 in numbers  # TM values, diagonal 1
    assert not (linked_zoo_home / "cache").exists()  # cache=None by default: nothing written to the store


def test_import_is_lazy_and_the_api_is_at_the_top_level():
    code = "import sys, trend_core as tl; print('torch' in sys.modules); print(tl.ModelSpec.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "ModelSpec"]
    from trend_core.attacks import PGD, CarliniWagnerL2, DeepFool
    from trend_core.attacks.ensemble_pgd import EnsemblePGD
    from trend_core.experiments.transfer import run_transfer
    from trend_core.nn.vote import MajorityVote

    assert (tl.PGD, tl.CarliniWagnerL2, tl.DeepFool) == (PGD, CarliniWagnerL2, DeepFool)
    assert (tl.EnsemblePGD, tl.MajorityVote, tl.run_transfer) == (EnsemblePGD, MajorityVote, run_transfer)
    for name in ("Zoo", "load_dataset", "select_ensembles", "fit_tm", "decision_boundary", "list_models"):
        assert callable(getattr(tl, name)) and name in dir(tl)
    with pytest.raises(AttributeError):
        tl.NoSuchThing  # noqa: B018


def test_an_attack_added_to_the_registry_appears_at_the_top_level(monkeypatch):
    class Blur(tl.Attack):
        name = "blur"

    monkeypatch.setitem(_FACTORIES, "blur", (Blur, {}))
    monkeypatch.delitem(tl.__dict__, "Blur", raising=False)
    assert tl.Blur is Blur and "Blur" in dir(tl) and "blur" in tl.list_attacks("b*")
    monkeypatch.delitem(tl.__dict__, "Blur")


def test_discovery_with_wildcards():
    quantized = tl.list_preset_models("*/Q[12]/*")
    assert Q1 in quantized and Q2 in quantized and FP not in quantized
    assert "resnet18" in tl.list_architectures("resnet*") and "vgg11_bn" not in tl.list_architectures("resnet*")
    assert tl.list_presets() == ["digits", "mnist"] and tl.list_attacks("pgd*") == ["pgd", "pgd-l2"]


def test_reprs_are_built_from_parameters():
    attack = tl.PGD(eps=0.1, steps=7)
    text = repr(attack)
    assert text.startswith("PGD(") and "eps=0.1" in text and "steps=7" in text and "step_size=0.01" in text
    again = eval(text, {"PGD": tl.PGD})  # the repr is the constructor call
    assert again.params() == attack.params()
    assert repr(tl.DeepFool(steps=3)).startswith("DeepFool(") and "steps=3" in repr(tl.DeepFool(steps=3))
    vote = tl.MajorityVote([nn.Linear(2, 2), nn.Linear(2, 2)], seed=3, names=["a", "b"])
    assert repr(vote) == "MajorityVote(names=['a', 'b'], seed=3)"
    for obj in (tl.PGD, tl.CarliniWagnerL2, tl.DeepFool, tl.EnsemblePGD, tl.MajorityVote):
        assert obj.__doc__ and len(obj.__doc__) > 80


def test_loading_a_model_leaves_the_global_rng_alone(test_zoo, zoo_model):
    zoo_model(FP)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    test_zoo.load(FP)
    assert torch.equal(torch.get_rng_state(), before)


def test_cache_argument_has_one_meaning_per_value(trend_home, tmp_path):
    from trend_core.storage.store import MemoryStore, Store, get_store, resolve_cache

    assert isinstance(resolve_cache(None), MemoryStore) and resolve_cache(None) is not resolve_cache(None)
    assert isinstance(resolve_cache(False), MemoryStore)
    assert resolve_cache(True) is get_store()
    folder = resolve_cache(tmp_path / "elsewhere")
    assert isinstance(folder, Store) and folder.directory == tmp_path / "elsewhere" / "cache"
    mine = MemoryStore()
    assert resolve_cache(mine) is mine
    with pytest.raises(TrendError, match="cache must be"):
        resolve_cache(3)


def tiny_classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3)).eval()


def images(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_run_transfer_caches_only_when_asked_and_takes_its_options_either_way(tmp_path):
    from trend_core.storage.store import MemoryStore

    models, data = [tiny_classifier(0), tiny_classifier(1)], images()
    attack = tl.PGD(eps=0.2, steps=3)
    mine = MemoryStore()
    first = tl.run_transfer(models, attack, data=data, cache=mine, device="cpu")
    assert len(mine) > 0
    cached = len(mine)
    again = tl.run_transfer(models, attack, data=data, options=tl.RunOptions(cache=mine, device="cpu"))
    assert again.pairs.equals(first.pairs) and len(mine) == cached  # the same run: read from the same cache
    with pytest.raises(TrendError, match="no argument 'store'.*cache"):  # the old keyword is gone, not ignored
        tl.run_transfer(models, attack, data=data, store=mine, device="cpu")


def numpy_quantize(x: torch.Tensor) -> torch.Tensor:
    """A defence outside autograd: 2-bit pixels through numpy."""
    return torch.from_numpy(np.round(x.cpu().numpy() * 3) / 3).to(x)


def test_with_preprocessing_normalizes_and_differentiates_a_numpy_transform_by_bpda():
    net = tiny_classifier()
    x, y = images()
    wrapped = tl.with_preprocessing(net, mean=[0.5], std=[0.25], transform=numpy_quantize)
    expected = net((numpy_quantize(x) - 0.5) / 0.25)
    assert torch.allclose(wrapped(x), expected)
    xg = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(wrapped(xg), y).backward()
    qx = numpy_quantize(x).requires_grad_(True)  # straight-through: the gradient at the transformed point
    torch.nn.functional.cross_entropy(net((qx - 0.5) / 0.25), y).backward()
    assert xg.grad.abs().sum() > 0 and torch.allclose(xg.grad, qx.grad, atol=1e-6)
    result = tl.PGD(eps=0.3, steps=10, step_size=0.05)(wrapped, x, y)
    assert result.linf.max() <= 0.3 + 1e-6 and result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert result.generated >= 1
    smooth = tl.with_preprocessing(net, [0.5], [0.25], transform=numpy_quantize, backward=lambda t: t * 0.5)
    xs = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(smooth(xs), y).backward()
    assert torch.allclose(xs.grad, 0.5 * qx.grad, atol=1e-6)  # the BPDA backward is the one given
    with pytest.raises(TrendError, match="std"):
        tl.with_preprocessing(net, [0.5], [0.0])
    with pytest.raises(TrendError, match="nn.Module"):
        tl.with_preprocessing(lambda t: t, [0.5], [0.25])


def test_one_source_of_attack_settings_for_pages_jobs_and_cli():
    from trend_core.attacks.pgd import step_size_for as jobs_rule
    from trend_core.cli.transfer import build_attack

    settings = tl.attack_settings("pgd", "digits")
    assert settings.eps.default == 0.1 and settings.setting("steps").default == 40
    assert jobs_rule is tl.step_size_for
    assert tl.step_size_for(0.1, 40) == 0.01 and tl.step_size_for(0.3, 20) == pytest.approx(0.01875)
    page = settings.build(eps=0.3, steps=20)
    cli = build_attack("pgd", "digits", eps="0.3", steps="20")
    assert page.params() == cli.params() == tl.PGD(eps=0.3, steps=20).params()
    assert build_attack("pgd", "digits").params() == settings.build().params()  # defaults agree
    assert tl.attack_settings("cw", "digits").complete(eps=0)["eps"] is None  # 0 = no clip
    assert build_attack("deepfool", "digits", params=["overshoot=0.05"]).overshoot == 0.05
    with pytest.raises(TrendError, match="--param"):
        build_attack("deepfool", "digits", params=["bogus=1"])
    with pytest.raises(TrendError, match="no parameter"):
        settings.complete(kappa=1)


def test_transfer_command_round_trips_through_the_cli_parser():
    import shlex

    from trend_core.cli import build_parser
    from trend_core.cli.transfer import build_attack
    from trend_core.service.commands import transfer_command

    params = tl.attack_settings("cw", "digits").complete(eps=0.25, steps=30, kappa=30.0, lr=0.02)
    command = transfer_command([FP], [FP, Q1], "cw", params, "digits", limit=50, home="/tmp/x y", device="cpu")
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.models == [FP, Q1] and args.sources == [FP] and args.targets is None and args.limit == "50"
    assert args.home == "/tmp/x y" and args.device == "cpu"
    rebuilt = build_attack(args.attack, "digits", args.eps, args.steps, args.step_size, args.kappa, args.param)
    assert rebuilt.params() == tl.make_attack("cw", **params).params()


def test_store_logs_an_entry_it_cannot_read_before_dropping_it(tmp_path, caplog):
    from trend_core.storage.store import Store

    store = Store(tmp_path)
    diskcache.Cache(str(store.directory)).set("broken", b"not a torch file")  # another program wrote it
    with caplog.at_level(logging.WARNING, logger="trend_core.storage.store"):
        assert store.get("broken", "fallback") == "fallback"
    assert "broken" in caplog.text and "unreadable" in caplog.text  # said, not silently deleted
    assert not store.has("broken")  # so has() never promises what get() cannot give
    store.set("broken", {"v": torch.ones(1)})
    assert torch.equal(store.get("broken")["v"], torch.ones(1))


def test_a_store_whose_entries_became_unreadable_recomputes_the_same_result(tmp_path):
    from trend_core.storage.store import Store

    store = Store(tmp_path)
    models, data, attack = [tiny_classifier(0), tiny_classifier(1)], images(), tl.PGD(eps=0.2, steps=3)
    first = tl.run_transfer(models, attack, data=data, cache=store, device="cpu")
    outside = diskcache.Cache(str(store.directory))  # the disk damaged behind the store's back
    for key in list(store.keys()):
        outside.set(key, b"damaged")
    again = tl.run_transfer(models, attack, data=data, cache=store, device="cpu")
    assert again.pairs.equals(first.pairs)
