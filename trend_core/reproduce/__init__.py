"""`trend reproduce`: the paper's experiments end to end on one dataset, with a verdict per finding.

``settings_for`` picks what a scale runs, ``run_reproduce`` runs (or reads from the store) every stage and
judges the findings, ``write_outputs`` writes the HTML report, CSVs and findings.json, and
``submit_reproduce`` runs it all as a dashboard job. Names load on first use (PEP 562), so importing
``trend_core.reproduce.choices`` for the command line does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "evaluate_findings": "findings",
    "run_reproduce": "pipeline",
    "stored_reproduction": "pipeline",
    "submit_reproduce": "pipeline",
    "build_html": "report",
    "csv_bundle": "report",
    "write_outputs": "report",
    "SCALES": "choices",
    "ReproSettings": "settings",
    "settings_for": "settings",
    "ReproduceCancelled": "stages",
}

__all__ = [
    "SCALES",
    "ReproSettings",
    "ReproduceCancelled",
    "build_html",
    "csv_bundle",
    "evaluate_findings",
    "run_reproduce",
    "settings_for",
    "stored_reproduction",
    "submit_reproduce",
    "write_outputs",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
