"""`trend reproduce`: the paper's experiments end to end on one dataset, with a verdict per finding.

``settings_for`` picks what a scale runs, ``run_reproduce`` runs (or reads from the store) every stage and
judges the findings, ``write_outputs`` writes the HTML report, CSVs and findings.json, and
``submit_reproduce`` runs it all as a dashboard job.
"""
from .findings import evaluate_findings
from .pipeline import run_reproduce, stored_reproduction, submit_reproduce
from .report import build_html, csv_bundle, write_outputs
from .settings import SCALES, ReproSettings, settings_for
from .stages import ReproduceCancelled

__all__ = ["SCALES", "ReproSettings", "ReproduceCancelled", "build_html", "csv_bundle", "evaluate_findings",
           "run_reproduce", "settings_for", "stored_reproduction", "submit_reproduce", "write_outputs"]
