"""Static checks of the engine: no import cycle between trend_core's modules, ruff (lint and format) and mypy."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "trend_core"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """trend_core module -> the trend_core modules it imports anywhere (top level or inside functions).

    A top-level import of trend_core.a.b first runs trend_core/a/__init__.py, so it also gets an edge to each
    enclosing package (other than the importer's own, already initialising, and the lazy root package): the
    cycle that hoisting an import into nn.bpda once made (ensemble -> nn -> ... -> ensemble) shows up here."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        in_function = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for inner in ast.walk(node)
            if inner is not node
        }
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            found = {t for t in targets if t in modules and t != name}
            graph[name] |= found
            if id(node) in in_function:
                continue
            for target in found:
                parts = target.split(".")
                for i in range(2, len(parts)):
                    enclosing = ".".join(parts[:i])
                    if enclosing in modules and enclosing != name and not name.startswith(enclosing + "."):
                        graph[name].add(enclosing)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_trend_core_has_no_import_cycle():
    graph = import_graph()
    assert (
        "trend_core.attacks.ensemble_pgd" in graph
        and "trend_core.ensemble.selection" in graph["trend_core.experiments.ensemble_sweep"]
    )
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_vote_and_the_ensemble_attack_have_one_home_each():
    engine = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("ensemble*.py")
        if p.parent.name not in ("plots", "cli")
    ]  # (figures and commands about ensembles, not engines)
    assert sorted(engine) == ["attacks/ensemble_pgd.py", "experiments/ensemble_sweep.py"]


def _tool(name: str) -> list[str]:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -r requirements-test.txt)")
    return [found]


def test_ruff_lint_passes():
    out = subprocess.run([*_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:]


def test_ruff_format_is_clean():
    out = subprocess.run([*_tool("ruff"), "format", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:]


@pytest.mark.slow
def test_mypy_passes():
    out = subprocess.run([*_tool("mypy")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:]


def test_every_function_local_import_says_why():
    """Imports live at the top of a module; the few kept inside a function (torch kept off the start-up path of
    `trend --help` and the app, optional dependencies, a name tests replace) carry a comment saying so."""
    unexplained = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            imports = [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
            covered = {i for n in imports for i in range(n.lineno, (n.end_lineno or n.lineno) + 1)}
            for node in imports:
                if "#" in lines[node.lineno - 1]:
                    continue
                above = node.lineno - 1  # 1-based number of the line above; the group's reason may sit on any
                explained = False  # import line of the group or on the comment line just above it
                while above >= 1 and (above in covered or not lines[above - 1].strip()):
                    explained = explained or (above in covered and "#" in lines[above - 1])
                    above -= 1
                if not explained and not lines[above - 1].strip().startswith("#"):
                    unexplained.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not unexplained, "function-local imports without a reason: " + ", ".join(unexplained)


def test_the_project_stands_alone():
    """A user's clone has no design notes beside it: code and README never point at files outside the project."""
    outside = ("PAPER.md", "DESIGN.md", "../shared")
    files = [
        *PACKAGE.rglob("*.py"),
        *(REPO / "trend_ui").rglob("*.py"),
        *(REPO / "pages").rglob("*.py"),
        REPO / "app.py",
        REPO / "README.md",
    ]
    hits = [f"{p.relative_to(REPO)}: {word}" for p in files if p.exists() for word in outside if word in p.read_text()]
    assert not hits, hits
