"""The engine's imports run one way: each package of trend_core imports only from its own layer or the layers
below it (the map is LAYERS, lowest first). Function-local imports count too: a lazy import the wrong way is
still a dependency the wrong way."""

from __future__ import annotations

from test_code_quality import PACKAGE, import_graph

# lowest first; packages on one row are siblings and may not import each other unless listed in SIBLINGS
LAYERS: list[tuple[str, ...]] = [
    ("errors", "stats"),  # leaves: a sentence type and interval arithmetic, no torch
    ("config",),  # specs, profiles, presets, labels, palette: torch-free names and settings
    ("storage", "runtime"),  # the content-keyed store, homes and locks | devices, executors, jobs, progress
    ("data",),  # datasets and image checks
    ("nn",),  # architectures, quantizers, the vote, preprocessing wrappers
    ("training",),  # one training loop and its parallel runner
    ("models",),  # the zoo of trained models (storage of weights), families, clean accuracy
    ("attacks",),  # one attack contract, PGD loop and its rules
    ("ensemble",),  # TREND selection and vote verdicts
    ("experiments",),  # transfer runs, TM(eps), boundaries, ensemble sweeps, the audit
    ("plots",),  # figures from results (no torch)
    ("reproduce",),  # the paper's pipeline, headless
    ("service",),  # the dashboard's jobs and submitters
    ("cli", "catalog"),  # the `trend` command | the notebook's listing helpers
]
SIBLINGS: set[tuple[str, str]] = set()  # (importer, imported) pairs allowed within one row


def layer_of(module: str) -> tuple[int, str]:
    top = module.split(".")[1] if module.count(".") else ""
    for rank, row in enumerate(LAYERS):
        if top in row:
            return rank, top
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for importer, imported in graph.items():
        if importer in ("trend_core", "trend_core.__main__"):
            continue  # the lazy public API and `python -m trend_core` sit above everything
        rank, top = layer_of(importer)
        for target in imported:
            if target == "trend_core":
                bad.append(f"{importer} -> trend_core (import the defining module, not the lazy root)")
                continue
            their_rank, their_top = layer_of(target)
            if their_rank > rank or (their_rank == rank and their_top != top and (top, their_top) not in SIBLINGS):
                bad.append(f"{importer} -> {target}")
    return sorted(bad)


def test_every_module_has_a_layer():
    for module in import_graph():
        if module not in ("trend_core", "trend_core.__main__"):
            layer_of(module)


def test_the_layer_check_catches_an_upward_import():
    assert wrong_way_imports({"trend_core.nn.vote": {"trend_core.experiments.transfer"}}) == [
        "trend_core.nn.vote -> trend_core.experiments.transfer"
    ]
    assert wrong_way_imports({"trend_core.experiments.transfer": {"trend_core.nn.vote"}}) == []


def test_imports_run_one_way():
    assert PACKAGE.is_dir()
    bad = wrong_way_imports(import_graph())
    assert not bad, "imports against the layers:\n" + "\n".join(bad)
