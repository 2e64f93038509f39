"""The store's hostile cases, each run as a user meets it: exit status and first line of output, and for the
silent ones the numbers (accuracies, TM). Run it against any checkout to compare before and after::

    python bench/store_truth.py                      # this checkout
    python bench/store_truth.py --code /old/checkout # another one (its trend_core is imported)

It needs the trained test zoo (``.trend-home/test-zoo``, built by the test suite) for the resnet18-w0.25 FP and
Q1 models; it trains only the one-epoch smallcnn the training cases need. Cases that need ``chattr`` (an
immutable folder, which stops root too) are skipped where it does not work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_ZOO = Path(os.environ.get("TREND_TEST_ZOO", REPO / ".trend-home" / "test-zoo")) / "models"
FP = "digits/resnet18-w0.25/FP/sgd/s0"
Q1 = "digits/resnet18-w0.25/Q1/sgd/s0"
TINY = "digits/smallcnn-w0.25/FP/sgd/s0/e1"
KEYS: dict[str, str] = {}
DEFAULT_HOME = [""]  # the TREND_HOME of every run that names no other (a fresh folder, never the user's)


def run(code: Path, argv: list[str], env: dict | None = None, stdout=None, python: str | None = None):
    """(exit status, first line of stderr else stdout, stdout) of ``trend argv`` or of a python snippet."""
    full = {**os.environ, "PYTHONPATH": str(code), "TREND_HOME": DEFAULT_HOME[0], **(env or {})}
    full.pop("TREND_HOME_ROOT", None) if "TREND_HOME_ROOT" not in (env or {}) else None
    cmd = [sys.executable, "-c", python] if python else [sys.executable, "-m", "trend_core", *argv]
    done = subprocess.run(  # (cwd: `python -m` puts the working folder first on sys.path)
        cmd, check=False, env=full, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=code
    )
    out = done.stdout if stdout is None else ""
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith(("\r", "training"))]
    tb = [ln for ln in lines if ln.startswith("Traceback")]
    first = (lines[-1] if tb else lines[0]) if lines else (out.splitlines()[0] if out.strip() else "")
    return done.returncode, first[:230], out


def key_of(code: Path, name: str) -> str:
    if name not in KEYS:
        KEYS[name] = run(
            code, [], python=f"from trend_core.config.specs import ModelSpec; print(ModelSpec.parse({name!r}).key)"
        )[2].strip()
    return KEYS[name]


def home_with(code: Path, base: Path, names=(FP, Q1)) -> Path:
    home = Path(tempfile.mkdtemp(dir=base))
    (home / "models").mkdir()
    for name in names:
        for suffix in (".json", ".safetensors"):
            shutil.copy2(TEST_ZOO / f"{key_of(code, name)}{suffix}", home / "models")
    return home


def accuracies(code: Path, home: Path) -> str:
    status, first, out = run(code, ["eval", FP, Q1, "--json", "--home", str(home)])
    if status:
        return f"eval exit {status}: {first}"
    rows = json.loads(out)
    return "eval exit 0: " + ", ".join(f"{r['name'].split('/')[2]} {r['test_acc_%']:.1f}%" for r in rows)


def tm(code: Path, home: Path) -> str:
    argv = ["transfer", "--models", FP, Q1, "--sources", FP, "--json", "--no-cache"]
    status, first, out = run(code, [*argv, "--home", str(home)])
    if status:
        return f"transfer exit {status}: {first}"
    pairs = [p for p in json.loads(out)["pairs"] if p["target"] != p["source"]]
    return f"transfer exit 0: TM FP->Q1 {pairs[0]['tm']:.3f}"


def listing(code: Path, home: Path) -> str:
    status, first, out = run(code, ["zoo", "list", "--json", "--home", str(home)])
    names = [m["name"].split("/")[2] for m in json.loads(out)] if status == 0 and out.strip() else []
    return f"list exit {status}: {first[:120]!s} -> listed {names}"


def cleaning(code: Path, home: Path) -> str:
    status, first, _ = run(code, ["zoo", "clean", "--home", str(home)])
    left = sorted(p.name.split(".")[0][:6] + "." + p.name.split(".", 1)[1] for p in (home / "models").glob("*.*"))
    return f"clean exit {status}: {first[:100]} (left {left})"


def chattr(path: Path, flag: str) -> bool:
    return subprocess.run(["chattr", flag, str(path)], check=False, capture_output=True).returncode == 0


def cases(code: Path, base: Path):
    fp, q1 = key_of(code, FP), key_of(code, Q1)

    home = home_with(code, base)
    yield "healthy zoo (reference)", [accuracies(code, home), tm(code, home)]

    home = home_with(code, base)
    for suffix in (".json", ".safetensors"):
        a, b = home / "models" / f"{fp}{suffix}", home / "models" / f"{q1}{suffix}"
        a.rename(a.with_suffix(".tmp"))
        b.rename(a)
        a.with_suffix(".tmp").rename(b)
    yield "two whole entries swapped", [listing(code, home), accuracies(code, home), tm(code, home)]

    home = home_with(code, base)
    a, b = home / "models" / f"{fp}.safetensors", home / "models" / f"{q1}.safetensors"
    a.rename(base / "x")
    b.rename(a)
    (base / "x").rename(b)
    yield "weights files swapped", [listing(code, home), accuracies(code, home), cleaning(code, home)]

    home = home_with(code, base)
    weights = home / "models" / f"{fp}.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))
    yield "weights overwritten with zeros", [listing(code, home), accuracies(code, home), cleaning(code, home)]

    home = home_with(code, base)
    shutil.copy2(home / "models" / f"{fp}.json", home / "models" / f"{q1}.json")
    yield "FP's metadata copied over Q1's", [listing(code, home), accuracies(code, home), cleaning(code, home)]

    home = home_with(code, base)
    (home / "models" / "backup.json").write_text('{"my": "notes"}')
    cleaned = cleaning(code, home)
    yield "a user's models/backup.json", [cleaned + f"; backup.json kept: {(home / 'models' / 'backup.json').exists()}"]

    yield from nan_imports(code, base)
    yield from home_cases(code, base)
    yield from cache_cases(code, base)


def nan_imports(code: Path, base: Path):
    make = f"""
import torch
from safetensors.torch import save_file
from trend_core.models.zoo import Zoo
state = {{k: v.clone() for k, v in Zoo({str(TEST_ZOO.parent)!r}).load({FP!r}).state_dict().items()}}
bn = {{k: (torch.full_like(v, -1.0) if k.endswith("running_var") else v) for k, v in state.items()}}
big = {{k: (torch.full_like(v, 3e38) if v.is_floating_point() and not k.endswith("running_var") else v)
        for k, v in state.items()}}
save_file(bn, {str(base / "bn.safetensors")!r}); save_file(big, {str(base / "big.safetensors")!r})
"""
    run(code, [], python=make)
    for file, label in (("bn.safetensors", "BatchNorm running_var = -1"), ("big.safetensors", "weights of 3e38")):
        home = Path(tempfile.mkdtemp(dir=base))
        status, first, out = run(code, ["zoo", "import", FP, str(base / file), "--home", str(home)])
        stored = any((home / "models").glob("*.safetensors")) if (home / "models").exists() else False
        yield f"import: {label}", [f"import exit {status}: {first or out.strip()} (stored: {stored})"]


def home_cases(code: Path, base: Path):
    file = base / "a-file"
    file.write_text("not a folder")
    loop = base / "loop"
    loop.symlink_to(loop)
    for label, home in (("TREND_HOME a file", file), ("TREND_HOME a symlink loop", loop)):
        status, first, _ = run(code, ["zoo", "list"], env={"TREND_HOME": str(home)})
        yield f"{label}: zoo list", [f"exit {status}: {first}"]
    py = f"import trend_core as tl; print(tl.Zoo({str(file)!r}).list())"
    status, first, out = run(code, [], python=py)
    yield "tl.Zoo(<a file>).list()", [f"exit {status}: {first or out.strip()}"]
    status, first, _ = run(code, ["train", TINY], env={"TREND_HOME": str(file)})
    yield "TREND_HOME a file: train", [f"exit {status}: {first}"]

    home = Path(tempfile.mkdtemp(dir=base))
    (home / "models").write_text("")
    for argv in (["zoo", "list"], ["train", TINY]):
        status, first, _ = run(code, [*argv, "--home", str(home)])
        yield f"--home whose models is a file: {argv[0]}", [f"exit {status}: {first}"]

    imm = Path(tempfile.mkdtemp(dir=base))
    if chattr(imm, "+i"):
        try:
            status, first, _ = run(code, ["train", TINY], env={"TREND_HOME": str(imm)})
            yield "TREND_HOME immutable: train", [f"exit {status}: {first}"]
        finally:
            chattr(imm, "-i")
    imm = Path(tempfile.mkdtemp(dir=base))
    (imm / "models").mkdir()
    (base / "good.safetensors").write_bytes(b"")
    run(
        code,
        [],
        python=f"""
from safetensors.torch import save_file
from trend_core.models.zoo import Zoo
save_file(Zoo({str(TEST_ZOO.parent)!r}).load({FP!r}).state_dict(), {str(base / "good.safetensors")!r})""",
    )
    if chattr(imm / "models", "+i"):
        try:
            for argv in (["train", TINY], ["zoo", "import", FP, str(base / "good.safetensors")]):
                status, first, _ = run(code, [*argv, "--home", str(imm)])
                yield f"--home whose models is immutable: {' '.join(argv[:2])}", [f"exit {status}: {first}"]
            py = f"import trend_core as tl; tl.Zoo({str(imm)!r}).get_or_train({TINY!r}, device='cpu')"
            status, first, _ = run(code, [], python=py)
            yield "Zoo(<immutable models>).get_or_train", [f"exit {status}: {first}"]
        finally:
            chattr(imm / "models", "-i")

    root = base / "root"
    outside = base / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "team").mkdir()
    (root / "escape").symlink_to(outside)
    py = """
from trend_core.storage.homes import known_homes, home_in_root
from trend_core.errors import TrendError
print([h.name for h in known_homes()][1:], end="; ")
try:
    print("home_in_root('escape') ->", home_in_root("escape").resolve())
except TrendError as exc:
    print("home_in_root('escape'):", exc)"""
    status, first, out = run(code, [], env={"TREND_HOME_ROOT": str(root)}, python=py)
    yield "TREND_HOME_ROOT/escape -> outside", [f"exit {status}: {(first or out.strip())[:200]}"]


def cache_cases(code: Path, base: Path):
    transfer = ["transfer", "--models", FP, Q1, "--sources", FP, "--limit", "20"]
    home = home_with(code, base)
    (home / "cache").write_text("")
    status, first, _ = run(code, [*transfer, "--home", str(home)])
    yield "cache folder a file: transfer", [f"exit {status}: {first}"]
    home = home_with(code, base)
    (home / "cache" / "cache.db").mkdir(parents=True)
    status, first, _ = run(code, [*transfer, "--home", str(home)])
    yield "cache.db a folder: transfer", [f"exit {status}: {first}"]
    py = f"""
import trend_core as tl
zoo = tl.Zoo({str(TEST_ZOO.parent)!r})
tl.run_transfer([zoo.load({FP!r}), zoo.load({Q1!r})], "pgd", limit=20, cache={str(base / "a-file")!r})"""
    status, first, _ = run(code, [], python=py)
    yield "run_transfer(cache=<a file>)", [f"exit {status}: {first}"]

    home = home_with(code, base)
    py = f"""
import pathlib, subprocess
import trend_core as tl
zoo = tl.Zoo({str(home)!r})
seen = []
def freeze(fraction, message):  # after the first source: the cache's folders (not its files) made immutable
    if not seen:
        seen.append(1)
        cache = pathlib.Path({str(home / "cache")!r})
        for folder in [cache, *(d for d in cache.rglob("*") if d.is_dir())]:
            subprocess.run(["chattr", "+i", str(folder)])
result = tl.run_transfer([zoo.load({FP!r}), zoo.load({Q1!r})], "pgd", limit=300, cache={str(home)!r}, progress=freeze)
print("finished: TM FP->Q1", round(result.matrix().iloc[0, 1], 3))"""
    if chattr(home, "+A"):  # (a probe that chattr works here; +A is harmless)
        chattr(home, "-A")
        status, first, out = run(code, [], python=py)
        subprocess.run(["chattr", "-R", "-i", str(home / "cache")], check=False, capture_output=True)
        yield "cache made read-only mid-run", [f"exit {status}: {first} {out.strip()}"]

    home = home_with(code, base)
    with open("/dev/full", "w") as full:
        for argv in (["zoo", "list", "--json"], ["eval", FP, Q1, "--json"]):
            status, first, _ = run(code, [*argv, "--home", str(home)], stdout=full)
            yield f"{' '.join(argv)} > /dev/full", [f"exit {status}: {first}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=str(REPO), help="checkout whose trend_core runs the cases")
    args = parser.parse_args()
    code = Path(args.code).resolve()
    with tempfile.TemporaryDirectory(prefix="store-truth-") as tmp:
        DEFAULT_HOME[0] = str(Path(tmp) / "default-home")
        for title, results in cases(code, Path(tmp)):
            print(f"- {title}")
            for line in results:
                print(f"    {line}")
            sys.stdout.flush()
        subprocess.run(["chattr", "-R", "-i", tmp], check=False, capture_output=True)


if __name__ == "__main__":
    main()
