"""A robustness card (``experiments.robustness_card``) as JSON and as one self-contained HTML page (inline style,
no scripts, every name and sentence escaped), to ship beside an exported ensemble. Torch-free: it reads the
card's plain data (``RobustnessCard.to_dict()``)."""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

PAGE_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:60rem;color:#1f2937}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:1.8rem;border-bottom:1px solid #e5e7eb}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #e5e7eb;padding:.3rem .6rem;text-align:right}
th{background:#f9fafb}td.name,th.name{text-align:left}.fired{color:#b45309}.ok{color:#047857}
pre{background:#f3f4f6;padding:.8rem;overflow-x:auto;white-space:pre-wrap}.note{color:#6b7280;font-size:.9rem}
"""


def card_data(card: Any) -> dict:
    """The card's plain data, from a RobustnessCard or the dict its ``to_dict`` (or JSON) gave."""
    data = card.to_dict() if hasattr(card, "to_dict") else card
    if not isinstance(data, dict) or "members" not in data:
        raise ValueError("not a robustness card")
    return data


def card_json(card: Any) -> str:
    """The card as indented JSON (NaN never appears: undefined numbers are null)."""
    return json.dumps(card_data(card), indent=2, allow_nan=False)


def accuracy_text(row: dict | None, key: str = "accuracy") -> str:
    """``93.0% [89.0, 96.0]``: an accuracy with its 95% interval, or n/a."""
    row = row or {}
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    low, high = row.get("ci_low"), row.get("ci_high")
    bounds = f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None and high is not None else ""
    return f"{100 * value:.1f}%{bounds}"


def _table(header: list[str], rows: list[list[str]], name_columns: int = 1) -> str:
    """An HTML table; every cell is escaped here (the first ``name_columns`` are left-aligned names)."""

    def cells(tag: str, values: list[str]) -> str:
        return "".join(
            f"<{tag}{' class=name' if i < name_columns else ''}>{escape(str(v))}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def _tm_table(tm: dict) -> str:
    labels, matrix = tm.get("labels") or [], tm.get("matrix") or []
    rows = [[label, *("n/a" if v is None else f"{v:.3f}" for v in row)] for label, row in zip(labels, matrix)]
    return _table(["source \\ target", *labels], rows)


def card_html(card: Any, title: str = "Robustness card") -> str:
    """The card as one HTML page: members and the vote (clean accuracy), A-GD and the audit's worst case per
    eps, the audit's flags, the TM sub-matrix and the commands that reproduce it; 95% bootstrap intervals."""
    data = card_data(card)
    members = data["members"]
    n = data.get("n_images")
    member_rows = [[m["label"], m.get("name") or "(a module)", accuracy_text(m.get("clean"))] for m in members]
    member_rows.append(
        ["majority vote", " + ".join(m["label"] for m in members), accuracy_text(data.get("vote_clean"))]
    )
    agd_rows = [[f"{r['eps']:g}", str(r.get("steps", "")), accuracy_text(r)] for r in data.get("agd", [])]
    audit_rows = [[f"{r['eps']:g}", str(r.get("level", "")), accuracy_text(r)] for r in data.get("audit", [])]
    flags = sorted(data.get("flags", []), key=lambda f: not f.get("fired"))
    flag_items = "".join(
        f"<li class={'fired' if f.get('fired') else 'ok'}><b>{'FIRED' if f.get('fired') else 'ok'}</b> "
        f"{escape(str(f.get('name', '')))}: {escape(str(f.get('sentence', '')))}</li>"
        for f in flags
    )
    tm = data.get("tm") or {}
    tm_note = (
        f"{escape(str(tm.get('attack') or 'given matrix'))}"
        + (f" at eps {tm['eps']:g}" if isinstance(tm.get("eps"), (int, float)) else "")
        + f" ({escape(str(tm.get('source', '')))})"
    )
    commands = "\n".join(data.get("commands") or []) or "(members given as modules: no command reproduces them)"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{PAGE_STYLE}</style></head><body>",
        f"<h1>{escape(title)}: majority vote of {len(members)} models on {escape(str(data.get('dataset')))}</h1>",
        (
            f"<p class=note>{n} test images; accuracies with 95% bootstrap intervals over the images; tie-break seed "
            f"{escape(str(data.get('seed')))}; TREND Lab {escape(str(data.get('version')))}, "
            f"{escape(str(data.get('created')))}.</p>"
        ),
        "<h2>Members and the vote (clean accuracy)</h2>",
        _table(["member", "zoo name", "clean accuracy"], member_rows, 2),
        "<h2>A-GD against the vote</h2>",
        _table(["eps", "steps", "robust accuracy"], agd_rows),
        "<h2>Audit: worst case per image over every attack</h2>",
        _table(["eps", "level", "robust accuracy"], audit_rows),
        "<p class=note>An image counts as robust only if it survives every attack of the audit's battery.</p>",
        f"<h2>Audit flags</h2><ul>{flag_items}</ul>",
        (
            f"<h2>Transferability among the members (TM)</h2><p class=note>{tm_note}; low TM: adversarial images "
            "crafted on one member rarely fool another.</p>"
        ),
        _tm_table(tm),
        f"<h2>Reproduce</h2><pre>{escape(commands)}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)
