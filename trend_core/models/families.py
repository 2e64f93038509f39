"""Family presets for transfer runs, built from the zoo's specs: models that differ in one factor only."""

from __future__ import annotations

import dataclasses
from typing import Collection, Iterable, Sequence

from trend_core.config.user_models import is_user_model_name

# family name -> the spec fields that vary inside it (everything else is held equal)
FACTORS = {
    "seeds": ("seed",),
    "architectures": ("arch", "width"),
    "optimizers": ("optimizer",),
    "input quantization": ("input_quant",),
    "weight quantization": ("weight_bits",),
    "activation quantization": ("act_bits",),
}


def _describe(spec, varying: tuple[str, ...]) -> str:
    fixed = {k: v for k, v in dataclasses.asdict(spec).items() if k not in varying}
    parts = []
    if "arch" not in varying:
        parts.append(fixed["arch"] + (f"-w{fixed['width']:g}" if fixed["width"] != 1 else ""))
    if "input_quant" not in varying:
        parts.append(fixed["input_quant"])
    if "weight_bits" not in varying and fixed["weight_bits"] != 32:
        parts.append(f"W{fixed['weight_bits']}")
    if "act_bits" not in varying and fixed["act_bits"] != 32:
        parts.append(f"A{fixed['act_bits']}")
    if "optimizer" not in varying:
        parts.append(fixed["optimizer"])
    if "seed" not in varying:
        parts.append(f"s{fixed['seed']}")
    return " ".join(parts)


def imported_names(metas: Iterable[dict]) -> set[str]:
    """Canonical names of the zoo models whose weights were imported rather than trained from their spec."""
    from trend_core.models.checkpoints import is_imported  # local: checkpoints load torch, this module stays light

    return {m["name"] for m in metas if m.get("name") and is_imported(m)}


def without_imported(groups: dict[str, Sequence[str]], imported_labels: Collection[str]) -> dict[str, list[str]]:
    """Seed groups (label lists) with the imported models taken out: seed statistics describe training, and an
    upload named ``.../s7`` is not a seed this zoo trained."""
    return {name: [m for m in members if m not in imported_labels] for name, members in groups.items()}


def families(specs: Iterable, imported: Collection[str] = ()) -> dict[str, list]:
    """'<factor>: <what is held fixed>' -> the specs (2 or more) that differ only in that factor, for every
    factor in FACTORS; ordered by factor, then by size (largest first). Specs named in ``imported`` (imported
    weights, ``imported_names``) are left out: a family compares models trained from their specs."""
    specs = [s for s in specs if s.name not in set(imported)]
    found: dict[str, list] = {}
    for factor, varying in FACTORS.items():
        groups: dict[tuple, list] = {}
        for spec in specs:
            rest = tuple((k, v) for k, v in sorted(dataclasses.asdict(spec).items()) if k not in varying)
            groups.setdefault(rest, []).append(spec)
        ranked = sorted((g for g in groups.values() if len(g) >= 2), key=lambda g: (-len(g), g[0].name))
        for group in ranked:
            found[f"{factor}: {_describe(group[0], varying)} ({len(group)} models)"] = sorted(
                group, key=lambda s: s.name
            )
    return found


def fully_trained(names: Sequence[str], metas: Iterable[dict]) -> tuple[list[str], dict[str, str]]:
    """The models of ``names`` a default pool should use, and why each other one is left out: imported weights
    for a spec (a defender's imported networks, ``user/...``, stay in), and models trained for fewer epochs than their dataset's default (the quick demo's 4-epoch models). Nothing
    is left out when fewer than two models would remain."""
    from trend_core.config.specs import DEFAULT_EPOCHS, ModelSpec  # local: keeps this module light for the pages

    by_name = {m.get("name"): m for m in metas}
    reasons: dict[str, str] = {}
    for name in names:
        meta = by_name.get(name, {})
        if is_user_model_name(name):  # the defender's own network (no spec): a candidate like any trained model
            continue
        if name in imported_names([meta]):
            reasons[name] = "imported weights"
            continue
        spec = ModelSpec.parse(name)
        wanted = DEFAULT_EPOCHS.get(spec.dataset)
        if wanted is not None and (spec.epochs or 0) < wanted:
            reasons[name] = f"trained {spec.epochs} of {wanted} epochs"
    kept = [n for n in names if n not in reasons]
    return (kept, reasons) if len(kept) >= 2 else (list(names), {})
