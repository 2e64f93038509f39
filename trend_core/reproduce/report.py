"""The reproduction's outputs: a self-contained HTML report (plotly's JS inline, no external URL), one CSV per
table, ``findings.json``, and a zip of the CSVs for the dashboard's download button."""

from __future__ import annotations

import html
import io
import json
import math
import zipfile
from pathlib import Path

import pandas as pd

from trend_core.models.checkpoints import atomic_write_bytes
from trend_core.reproduce.figures import report_figures
from trend_core.reproduce.findings import findings_frame
from trend_core.reproduce.judging import FAILED, HELD, INCONCLUSIVE, INTERVAL_NOTE
from trend_core.reproduce.stage_list import STAGES

VERDICT_COLORS = {HELD: "#1a7f37", FAILED: "#cf222e", INCONCLUSIVE: "#9a6700"}
STYLE = """
body{font-family:Inter,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#1f2328}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} .verdict{font-weight:600;white-space:nowrap} .rule{color:#57606a;font-size:12px}
h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px} .note{color:#9a6700}
"""


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def stage_tables(report: dict) -> dict[str, pd.DataFrame]:
    """Every table of the report by CSV file name: ``findings.csv`` and ``<stage>_<table>.csv``."""
    tables = {"findings.csv": findings_frame(report["findings"])}
    for name, stage in report["stages"].items():
        for key, value in stage.items():
            if isinstance(value, pd.DataFrame):
                tables[f"{name}_{key}.csv"] = value
    return tables


def findings_json(report: dict) -> dict:
    """What ``findings.json`` holds: settings, run facts, the findings and each stage's status."""
    stages = {name: {"status": s.get("status"), "seconds": s.get("seconds")} for name, s in report["stages"].items()}
    return {"settings": report["settings"], "run": report["run"], "findings": report["findings"], "stages": stages}


def csv_bundle(report: dict) -> bytes:
    """A zip of every CSV and findings.json (the dashboard's download)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for filename, frame in stage_tables(report).items():
            archive.writestr(filename, frame.to_csv(index=False))
        archive.writestr("findings.json", json.dumps(findings_json(report), indent=2, default=_json_default))
    return buffer.getvalue()


def _table(frame: pd.DataFrame, digits: int = 4) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def part_text(part: dict) -> str:
    """``name: verdict (0.12 [0.05, 0.19], held if above 0)`` for one part of a finding."""
    text = f"{part['part']}: {part['verdict']}"
    if part.get("value") is not None and part.get("ci_low") is not None:
        side = "above" if part.get("held_if") == "above" else "below"
        text += (
            f" ({part['value']:.3g} [{part['ci_low']:.3g}, {part['ci_high']:.3g}], held if {side} "
            f"{part['threshold']:g})"
        )
    if part.get("images_to_decide"):
        text += f"; about {part['images_to_decide']} images would decide it"
    return text


def findings_html(findings: list[dict]) -> str:
    rows = []
    for f in findings:
        color = VERDICT_COLORS.get(f["verdict"], "#57606a")
        parts = "".join(f"<br>{html.escape(part_text(p))}" for p in f.get("parts", []))
        rows.append(
            f"<tr><td>{f['finding']}</td><td>{html.escape(f['claim'])}</td><td>{html.escape(f['measured'])}</td>"
            f"<td>{html.escape(f['paper'])}</td><td><span class='verdict' style='color:{color}'>"
            f"{html.escape(f['verdict'])}</span>{parts}<div class='rule'>Rule: {html.escape(f['rule'])}</div></td></tr>"
        )
    return (
        "<table><thead><tr><th>#</th><th>claim</th><th>measured here</th><th>paper</th><th>verdict and rule"
        "</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def build_html(report: dict) -> str:
    """The whole report as one HTML page; plotly's JS is embedded once, so it opens offline from a file."""
    settings, run = report["settings"], report["run"]
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>TREND reproduction: {html.escape(settings['dataset'])} ({html.escape(settings['scale'])})</title>",
        f"<style>{STYLE}</style></head><body>",
        (
            f"<h1>TREND reproduction on {html.escape(settings['dataset'])}, scale {html.escape(settings['scale'])}, "
            f"profile {html.escape(settings['profile'])}</h1>"
        ),
    ]
    for note in run.get("notes", []):
        out.append(f"<p class='note'>{html.escape(note)}</p>")
    out.append(
        "<h2>Findings</h2><p>Each verdict is computed from the numbers of this run by the rule printed "
        "under it; 'not testable at this scale' means the run lacks the models or data the rule needs. "
        f"{html.escape(INTERVAL_NOTE)} Numbers read value [95% interval].</p>"
    )
    out.append(findings_html(report["findings"]))
    facts = {
        "models": ", ".join(f"{r}: {n}" for r, n in settings["models"].items()),
        "test images": settings["limit"] or "all",
        "transfer eps (PGD)": settings["eps"],
        "PGD steps / step size": f"{settings['pgd_steps']} / {settings['pgd_step_size']}",
        "CW steps / binary-search steps": f"{settings['cw_steps']} / {settings['cw_search_steps']}",
        "DeepFool steps": settings["deepfool_steps"],
        "ensemble eps": settings["ensemble_eps"],
        "ensemble attack steps": settings["ensemble_steps"],
        "TREND / audit eps": settings["trend_eps"],
        "TM(eps) fit eps": settings["fit_eps"],
        "measured sweep eps": len(settings["sweep_eps"]),
        "seed": settings["seed"],
        "device": run["device"],
        "versions": run["versions"],
        "wall time of this run (s)": f"{run['wall_seconds']:.1f}",
        "compute time of the stages when first run (s)": f"{run['compute_seconds']:.1f}",
        "stages read from the store": ", ".join(run["from_store"]) or "none",
        "finished": run["finished"],
    }
    out.append("<h2>Settings</h2>")
    out.append(_table(pd.DataFrame({"setting": list(facts), "value": [str(v) for v in facts.values()]})))
    figures = report_figures(report)
    first, count = True, 0
    for name, stage in report["stages"].items():
        title = STAGES[name][0] if name in STAGES else name
        out.append(f"<h2>{html.escape(title)}</h2>")
        status = str(stage.get("status"))
        if status != "done":
            out.append(f"<p class='note'>{html.escape(status)}</p>")
            continue
        for caption, fig in figures.get(name, []):
            out.append(f"<h3>{html.escape(caption)}</h3>")
            count += 1  # fixed element ids: the same report gives the same file
            out.append(
                fig.to_html(
                    full_html=False, include_plotlyjs=first, div_id=f"figure-{count}", config={"displaylogo": False}
                )
            )
            first = False
        for key, value in stage.items():
            if isinstance(value, pd.DataFrame) and len(value) <= 400:
                out.append(
                    f"<h3>{html.escape(name)}: {html.escape(key)} (CSV: {html.escape(name)}_{html.escape(key)}"
                    f".csv)</h3>"
                )
                out.append(_table(value))
    out.append("</body></html>")
    return "\n".join(out)


def write_outputs(report: dict, out_dir: str | Path) -> list[Path]:
    """Write report.html, the CSVs and findings.json into ``out_dir`` (each atomically); returns the paths."""
    folder = Path(out_dir).expanduser()
    written = []
    for filename, frame in stage_tables(report).items():
        atomic_write_bytes(folder / filename, frame.to_csv(index=False).encode())
        written.append(folder / filename)
    atomic_write_bytes(
        folder / "findings.json", json.dumps(findings_json(report), indent=2, default=_json_default).encode()
    )
    atomic_write_bytes(folder / "report.html", build_html(report).encode())
    return [*written, folder / "findings.json", folder / "report.html"]
