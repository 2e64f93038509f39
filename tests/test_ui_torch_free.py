"""The dashboard's pages and trend_ui hold no torch code: importing them leaves torch unloaded (the server answers
at once; torch comes in only when a trend_core call needs it), and no line of theirs imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "trend_ui").glob("*.py")])


def imported_modules(path: Path, top_level_only: bool) -> set[str]:
    """Modules ``path`` imports (absolute names; relative ones skipped), at module level or anywhere."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_ui_files_are_found():
    assert len(UI_FILES) > 10 and ROOT / "trend_ui" / "context.py" in UI_FILES


def test_no_ui_file_imports_torch():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in UI_FILES
        for name in imported_modules(path, top_level_only=False)
        if name.split(".")[0] in ("torch", "torchvision", "torchattacks")
    ]
    assert not offenders, "torch imported by UI code (move it into a trend_core service function):\n" + "\n".join(
        offenders
    )


def test_importing_the_ui_leaves_torch_unloaded():
    # the pages run their Streamlit code on import, so import what they import at module level, and trend_ui itself
    modules = sorted({"trend_ui", *(m for p in UI_FILES for m in imported_modules(p, top_level_only=True))})
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import trend_ui.cluster, trend_ui.zoo_actions, trend_ui.zoo_health\n"
        "print('torch' in sys.modules, sorted(m for m in sys.modules if m.startswith('trend')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded, modules_seen = out.stdout.strip().split(" ", 1)
    assert "trend_ui.context" in modules_seen  # the check imported something real
    assert loaded == "False", f"torch was imported by the UI's imports: {modules_seen}"
