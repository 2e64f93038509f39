"""Family presets for transfer runs, built from the zoo's specs: models that differ in one factor only."""

from __future__ import annotations

import dataclasses
from typing import Iterable

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


def families(specs: Iterable) -> dict[str, list]:
    """'<factor>: <what is held fixed>' -> the specs (2 or more) that differ only in that factor, for every
    factor in FACTORS; ordered by factor, then by size (largest first)."""
    specs = list(specs)
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
