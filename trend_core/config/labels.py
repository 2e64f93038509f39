"""Short, unique display labels for models, and the paper's default picks for the dashboard's pickers.

A spec's ``short_name`` (FP-s0, Q2-s0, FP-VGG11BN-s0) follows the paper but is not unique: the quick demo zoo's
4-epoch FP model and the preset's 20-epoch one are both "FP-s0". ``unique_labels`` keeps the short name and, only
where two models share it, appends the parts of their specs that tell them apart ("FP-s0-e4", "FP-s0-w0.5"), so
every chart and picker shows a short label that names one model.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from trend_core.config.specs import ModelSpec
from trend_core.config.user_models import is_user_model_name
from trend_core.errors import TrendError

# Spec fields a short name leaves out, in the order their distinguishing suffix is tried, and how each is written.
_DISTINGUISHING = (
    ("epochs", lambda s: f"e{s.epochs}"),
    ("width", lambda s: f"w{s.width:g}"),
    ("lr", lambda s: f"lr{s.lr:g}"),
    ("pretrained", lambda s: "pre" if s.pretrained else "scratch"),
    ("arch", lambda s: s.arch),
    ("dataset", lambda s: s.dataset),
)


def _spec(model: ModelSpec | str) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else ModelSpec.parse(str(model))


def unique_labels(models: Sequence[ModelSpec | str]) -> list[str]:
    """One short label per model (specs or canonical names), unique among ``models``.

    The short name where it is unique; else the short name plus the suffixes of the fields that differ within its
    clashing group (e.g. "FP-s0-e4" next to "FP-s0-e20"); the canonical name if even that clashes. The same model
    given twice gets the same label.
    """
    specs = [_spec(m) for m in models]
    labels = [s.short_name for s in specs]
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    for label, members in groups.items():
        distinct = list(dict.fromkeys(specs[i] for i in members))
        if len(distinct) < 2:
            continue
        fields = [(name, write) for name, write in _DISTINGUISHING if len({getattr(s, name) for s in distinct}) > 1]
        for i in members:
            labels[i] = "-".join([label, *(write(specs[i]) for _, write in fields)])
    counts: dict[str, set[ModelSpec]] = {}
    for label, spec in zip(labels, specs):
        counts.setdefault(label, set()).add(spec)
    return [spec.name if len(counts[label]) > 1 else label for label, spec in zip(labels, specs)]


def label_map(names: Iterable[str]) -> dict[str, str]:
    """Canonical name -> unique short label, for pickers and tables: an imported network (``user/<dataset>/<name>``)
    is labelled by its own name where no other model has that label; names that do not parse keep themselves."""
    names = list(dict.fromkeys(names))
    parsed, other, imported = [], [], []
    for name in names:
        if is_user_model_name(name):
            imported.append(name)
            continue
        try:
            parsed.append((name, ModelSpec.parse(name)))
        except (TrendError, ValueError):
            other.append(name)
    mapping = dict(zip([n for n, _ in parsed], unique_labels([s for _, s in parsed])))
    mapping.update({n: n for n in other})
    taken = list(mapping.values())
    slugs = [n.strip().split("/")[-1] for n in imported]
    for name, slug in zip(imported, slugs):
        mapping[name] = slug if slugs.count(slug) == 1 and slug not in taken else name
    return {n: mapping[n] for n in names}


def paper_picks(names: Sequence[str], inputs: Sequence[str], fill: bool = True) -> list[str]:
    """The models the paper's figures use, by input quantization (e.g. ("FP", "Q1") for Fig. 4, ("FP", "Q1",
    "Q2") for its headline ensemble), picked from ``names``.

    For each wanted input the best match: full-precision weights and activations, a ResNet18, SGD, seed 0, the
    longest training (the preset's model over the quick demo's). A wanted input missing from ``names`` is
    replaced, when ``fill``, by the next model in ``names`` not yet picked, so a picker is never left short.
    """
    specs = {}
    for name in names:
        try:
            specs[name] = ModelSpec.parse(name)
        except (TrendError, ValueError):
            continue
    chosen: list[str] = []
    for wanted in inputs:
        found = [n for n, s in specs.items() if s.input_quant == wanted and n not in chosen]
        if not found:
            continue
        chosen.append(
            min(
                found,
                key=lambda n: (
                    specs[n].weight_bits != 32,
                    specs[n].act_bits != 32,
                    not specs[n].arch.startswith("resnet18"),
                    specs[n].optimizer != "sgd",
                    specs[n].seed,
                    -(specs[n].epochs or 0),
                    names.index(n),
                ),
            )
        )
    if fill:
        chosen += [n for n in names if n not in chosen][: max(0, len(inputs) - len(chosen))]
    return chosen


LABEL_ATTRIBUTE = "trend_label"  # a model's label given by its caller (e.g. unique across the whole zoo)


def model_labels(models: Sequence[Any]) -> list[str]:
    """Unique display labels: a label the caller set on the model (``set_label``: the dashboard gives every zoo
    model its zoo-wide label, so a chart says what the pickers say), else the spec's short name (with the
    distinguishing part where short names clash, e.g. "FP-s0-e4": ``labels.unique_labels``), else ``.name``."""

    def spec_of(m):
        return getattr(m, "spec", None)

    given = {i: getattr(m, LABEL_ATTRIBUTE, None) for i, m in enumerate(models)}
    with_spec = [i for i, m in enumerate(models) if spec_of(m) is not None and not given[i]]
    spec_labels = dict(zip(with_spec, unique_labels([spec_of(models[i]) for i in with_spec])))
    labels = []
    for i, m in enumerate(models):
        name = getattr(m, "name", None)
        if given[i]:
            labels.append(str(given[i]))
        else:
            labels.append(
                spec_labels[i] if i in spec_labels else name if isinstance(name, str) and name else f"model{i}"
            )
    clashing = {label for label in labels if labels.count(label) > 1}
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in clashing:
            seen[label] = seen.get(label, 0) + 1
            labels[i] = f"{label}#{seen[label]}"
    return labels


def set_label(model: Any, label: str) -> Any:
    """Give ``model`` the label every table and chart made from it shows (``model_labels`` reads it)."""
    setattr(model, LABEL_ATTRIBUTE, str(label))
    return model


def models_for_label(label: str, names: Sequence[str]) -> list[str]:
    """The models among ``names`` (canonical names, e.g. a zoo's) that ``label`` (from a TM file or a command
    line) may name: the one whose canonical name it is; else, in each dataset, the model whose unique label
    (``label_map`` within that dataset) it is, or failing that every model whose short name it is. More than one:
    the label is ambiguous."""
    label = str(label)
    if label in names:
        return [label]
    by_dataset: dict[str, dict[str, str]] = {}  # dataset -> name -> short name
    for name in names:
        if is_user_model_name(name):  # an imported network: user/<dataset>/<short name>
            _, dataset, short = name.strip().split("/")
            by_dataset.setdefault(dataset, {})[name] = short
            continue
        try:
            spec = ModelSpec.parse(name)
        except (TrendError, ValueError):
            continue
        by_dataset.setdefault(spec.dataset, {})[name] = spec.short_name
    found = []
    for shorts in by_dataset.values():
        exact = [n for n, lab in label_map(list(shorts)).items() if lab == label]
        found += exact or [n for n, short in shorts.items() if short == label]
    return found
