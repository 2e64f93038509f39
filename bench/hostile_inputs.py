"""Replay bad input, kills, byte corruption, store damage and bad Python data against a checkout; every case is
a check with an expected outcome, PASS or FAIL.

    python bench/hostile_inputs.py                        # this checkout
    python bench/hostile_inputs.py --repo /tmp/api-base   # another one (`git worktree add /tmp/api-base REV`)
    python bench/hostile_inputs.py --only store api       # only the classes whose name holds these words
    python bench/hostile_inputs.py --json results.json    # also write every check as JSON (to compare runs)

The cases run the other checkout's ``trend_core`` (``PYTHONPATH``); the setup (a store holding two trained
test-zoo digits models, FP and Q1, from .trend-home/test-zoo, trained on first use) uses this one.

Bad CLI inputs run in one process through ``trend_core.cli.main`` (so an exception is seen as a traceback) and
are classed as: refused (exit 2, one line "trend: error: ...", before any training or attack: the expected
outcome), refused late (the same after work had started), usage (argparse's usage error, exit 2), accepted
(exit 0: bad input taken as good) or traceback. Every other check runs in subprocesses, as a user meets it,
and reads the values it compares (a check whose values cannot be read fails). "Refused" there means exit 2
with a last line "trend: error: ..." and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
FP = "digits/resnet18-w0.25/FP/sgd/s0"
Q1 = "digits/resnet18-w0.25/Q1/sgd/s0"
TINY = "digits/smallcnn-w0.25/FP/sgd/s0/e1"
FAST = ["--limit", "60", "--steps", "5", "--device", "cpu"]

BAD_INPUTS = [  # the argv of each case; {file} is a regular file, {home} the store with FP and Q1, {dir} a folder
    ["train", "digits/resnet18-w0.25/FP/sgd/s100000000000000000000000", "--home", "{dir}/h1"],
    ["train", "digits/resnet18-w0.25/FP/sgd/s" + "7" * 5000, "--home", "{dir}/h1"],
    ["train", TINY.replace("/e1", "/e0"), "--home", "{dir}/h2"],
    ["train", "digits/smallcnn-w0.0001/FP/sgd/s0/e1", "--home", "{dir}/h3"],
    ["train", "digits/resnet18-w-1/FP/sgd/s0", "--home", "{dir}/h1"],
    ["train", "digits/resnet18/FP/sgd/s0/lrnan", "--home", "{dir}/h1"],
    ["train", "digits/resnet18/FP/sgd/s0/e99999999", "--home", "{dir}/h1"],
    ["train", "digits/resnet18/Q9/sgd/s0", "--home", "{dir}/h1"],
    ["train", "digits/resnet18/FP-W0/sgd/s0", "--home", "{dir}/h1"],
    ["train", "mnist/resnet18/FP/sgd/s0", "--home", "{dir}/h1"],
    ["train", "", "--home", "{dir}/h1"],
    ["train", TINY, "--home", "{file}/home"],
    ["train", TINY, "--home", "{file}"],
    ["train", TINY, "--home", ""],
    ["zoo", "list", "--home", "{file}/x"],
    ["zoo", "list", "--home", "{file}"],
    ["reproduce", "--scale", "mini", "--home", "{file}"],
    ["zoo", "import", TINY, "{dir}/empty.pt", "--home", "{dir}/h4"],
    ["zoo", "import", TINY, "{dir}/garbage.pt", "--home", "{dir}/h4"],
    ["zoo", "import", TINY, "{dir}/missing.pt", "--home", "{dir}/h4"],
    ["zoo", "import", FP, "{dir}/nan.safetensors", "--home", "{home}"],
    ["zoo", "import", FP, "{dir}/int8.safetensors", "--home", "{home}"],
    ["zoo", "import", FP, "{dir}/good.safetensors", "--home", "{home}"],
    ["zoo", "delete", "digits/resnet18/FP/sgd/s5", "--home", "{home}"],
    ["eval", "digits/resnet18/FP/sgd/s5", "--home", "{home}", "--device", "cpu"],
    ["select", "--tm", "{dir}/text_long.csv", "-k", "2"],
    ["select", "--tm", "{dir}/negative.csv", "-k", "2"],
    ["select", "--tm", "{dir}/inf.csv", "-k", "2"],
    ["select", "--tm", "{dir}/above_one.csv", "-k", "2"],
    ["select", "--tm", "{dir}/missing_column.csv", "-k", "2"],
    ["select", "--tm", "{dir}/short_row.csv", "-k", "2"],
    ["select", "--tm", "{dir}/long_row.csv", "-k", "2"],
    ["select", "--tm", "{dir}/good.csv", "-k", "0"],
    ["select", "--tm", "{dir}/good.csv", "-k", "2", "--top", "0"],
    ["select", "--tm", "{dir}/good.csv", "-k", "2", "--min-acc", "7", "--home", "{home}"],
    ["select", "--tm", "{dir}/empty.pt", "-k", "2"],
    ["select", "--tm", "{dir}", "-k", "2"],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--csv", "{file}/tm.csv", *FAST],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--long-csv", "{file}/pairs.csv", *FAST],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--attack", "pgd-l2", "--eps", "inf", *FAST],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--eps", "nan", *FAST],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--eps", "-0.1", *FAST],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--steps", "1000000000", "--limit", "60"],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--steps", "9" * 5000, "--limit", "60"],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--limit", "0", "--steps", "5"],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--limit", "-5", "--steps", "5"],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--attack", "fgsm", *FAST],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--split", "all", *FAST],
    ["transfer", "--models", FP, Q1, "--home", "{home}", "--sources", TINY, *FAST],
    ["transfer", "--models", FP, "cifar10/resnet18/FP/sgd/s0", "--home", "{home}", *FAST],
    ["ensemble-attack", "--models", FP, Q1, "--home", "{home}", "--seed", "100000000000000000000000", *FAST],
    ["ensemble-attack", "--models", FP, Q1, "--home", "{home}", "--steps", "1000000000", "--limit", "60"],
    ["ensemble-attack", "--models", FP, Q1, "--home", "{home}", "--eps", "inf", *FAST],
    ["ensemble-attack", "--models", FP, Q1, "--home", "{home}", "--rule", "best", *FAST],
    ["ensemble-attack", "--models", FP, "--home", "{home}", *FAST],
    ["boundary", "--model", FP, "--index", "0", "--home", "{home}", "--seed", "-1"],
    ["boundary", "--model", FP, "--index", "0", "--home", "{home}", "--seed", "100000000000000000000000"],
    ["boundary", "--model", FP, "--index", "0", "--home", "{home}", "--resolution", "100000000"],
    ["boundary", "--model", FP, "--index", "100000", "--home", "{home}"],
    ["boundary", "--model", FP, "--index", "0", "--home", "{home}", "--out", "{file}/map.png", "--resolution", "5"],
    ["fit-tm", "--source", FP, "--target", Q1, "--home", "{home}", "--points", "-3", *FAST],
    ["fit-tm", "--source", FP, "--target", Q1, "--home", "{home}", "--eps", "0.1", "0.2", "inf", *FAST],
    ["fit-tm", "--source", FP, "--target", FP, "--home", "{home}", *FAST],
]

DRIVER = textwrap.dedent("""
    import contextlib, io, json, signal, sys
    import torch
    torch.set_num_threads(1)
    import trend_core.attacks.base as base
    import trend_core.training.train as train
    from trend_core.cli import main

    work = [0]
    def counting(original):
        def wrapped(*args, **kwargs):
            work[0] += 1
            return original(*args, **kwargs)
        return wrapped
    train.train_model = counting(train.train_model)
    base.Attack.run = counting(base.Attack.run)
    class StillRunning(BaseException):
        pass

    def give_up(signum, frame):
        raise StillRunning()

    signal.signal(signal.SIGALRM, give_up)
    results = []
    for argv in json.load(open(sys.argv[1])):
        work[0] = 0
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            signal.alarm(int(sys.argv[3]))
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
            except StillRunning:
                code = "still running"
            except BaseException as exc:
                code = "traceback"
                err.write(f"{type(exc).__name__}: {exc}"[:300])
            finally:
                signal.alarm(0)
        results.append({"argv": argv, "code": code, "stderr": err.getvalue()[-600:], "work": work[0]})
    json.dump(results, open(sys.argv[2], "w"))
""")


def classify(result: dict) -> str:
    err = result["stderr"].strip()
    if result["code"] == "traceback" or "Traceback" in err:
        return "traceback"
    if result["code"] == "still running":
        return "accepted (still working after the time limit)"
    if result["code"] == 0:
        return "accepted"
    if result["code"] == 2 and err.startswith("usage:"):
        return "usage"
    if result["code"] == 2 and len(err.splitlines()) == 1 and err.startswith("trend: error:"):
        return "refused late" if result["work"] else "refused"
    return f"exit {result['code']}"


def prepare(work: Path, zoo_dir: Path) -> dict:
    """The store with FP and Q1, a regular file, bad checkpoints and TM tables; returns the placeholders."""
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(HERE))
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo

    source = Zoo(zoo_dir)
    for name in (FP, Q1):
        source.get_or_train(name, device="cpu")
    home = work / "home"
    (home / "models").mkdir(parents=True)
    for name in (FP, Q1):
        key = ModelSpec.parse(name).key
        for suffix in (".json", ".safetensors"):
            shutil.copy2(source.models_dir / f"{key}{suffix}", home / "models" / f"{key}{suffix}")
    files = work / "files"
    files.mkdir()
    (work / "plain-file").write_text("a file, not a folder")
    (files / "empty.pt").write_bytes(b"")
    (files / "garbage.pt").write_bytes(b"\x80\x04\x95" + b"garbage" * 10)
    state = {k: v.clone() for k, v in source.load(FP).state_dict().items()}
    save_file(state, str(files / "good.safetensors"))
    save_file(
        {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
        str(files / "nan.safetensors"),
    )
    save_file(
        {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in state.items()}, str(files / "int8.safetensors")
    )
    # finite weights whose outputs are NaN: a BatchNorm variance below zero, and weights that overflow to inf
    save_file(
        {k: torch.full_like(v, -1.0) if k.endswith("running_var") else v for k, v in state.items()},
        str(files / "negative_var.safetensors"),
    )
    save_file(
        {
            k: torch.full_like(v, 3e38) if v.is_floating_point() and not k.endswith("running_var") else v
            for k, v in state.items()
        },
        str(files / "huge.safetensors"),
    )
    good = "source,A,B,C\nA,1,0.2,0.3\nB,0.1,1,0.4\nC,0.2,0.3,1\n"
    for name, text in {
        "good": good,
        "text_long": "source,target,tm\nA,B,high\nB,A,0.1\nA,A,1\nB,B,1\n",
        "negative": good.replace("0.2,0.3\n", "-1e300,0.3\n", 1),
        "inf": good.replace("0.4", "inf"),
        "above_one": good.replace("0.4", "1.5"),
        "missing_column": "source,A,B\nA,1,0.2\nB,0.1,1\nC,0.2,0.3\n",
        "short_row": good.replace("A,1,0.2,0.3", "A,1,0.2"),  # A -> C would be padded with NaN
        "long_row": good.replace("A,1,0.2,0.3", "A,1,0.2,0.3,0.5"),
    }.items():
        (files / f"{name}.csv").write_text(text)
    return {"home": str(home), "file": str(work / "plain-file"), "dir": str(files)}


def run_bad_inputs(repo: Path, work: Path, places: dict, limit_s: int) -> list[dict]:
    cases = [[a.format(**places) for a in argv] for argv in BAD_INPUTS]
    (work / "cases.json").write_text(json.dumps(cases))
    subprocess.run(
        [sys.executable, "-c", DRIVER, str(work / "cases.json"), str(work / "results.json"), str(limit_s)],
        env=_env(repo),
        check=True,
        cwd=work,
    )
    return json.loads((work / "results.json").read_text())


DEFAULT_HOME = [""]  # TREND_HOME of every child that names no other: a fresh folder, never the user's store


def _env(repo: Path, **extra: str) -> dict:
    """The environment of a child run against ``repo`` (children also start in ``repo``: ``python -m`` and
    ``-c`` put the working folder first on sys.path)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "TREND_HOME": DEFAULT_HOME[0], **extra}
    env.pop("TREND_HOME_ROOT", None)
    return env


def _trend(
    repo: Path, *argv: str, timeout: int = 600, env: dict | None = None, stdout=None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trend_core", *argv],
        env=_env(repo, **(env or {})),
        stdout=stdout or subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        cwd=repo,
    )


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return lines[-1].strip()[:160] if lines else ""


def _refused(proc: subprocess.CompletedProcess) -> bool:
    """Exit 2 with one sentence: the last line of stderr is "trend: error: ...", and no traceback."""
    return proc.returncode == 2 and _last_line(proc).startswith("trend: error:") and "Traceback" not in proc.stderr


def _outcome(proc: subprocess.CompletedProcess) -> str:
    said = _last_line(proc) or " ".join((proc.stdout or "").split())[:120]
    return f"exit {proc.returncode}" + (f": {said}" if said else "")


def _fresh_home(work: Path, places: dict, name: str) -> Path:
    home = work / name
    shutil.copytree(Path(places["home"]) / "models", home / "models")
    return home


def _weights(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((home / "models").glob("*.safetensors"))}


# ----------------------------------------------------------------------------- faults
def fault_retrain_killed(repo, work, places):
    home = _fresh_home(work, places, "f-retrain")
    before = _weights(home)
    log = work / "retrain.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trend_core", "train", "--force", FP, "--home", str(home), "--device", "cpu"],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=_env(repo),
            cwd=repo,
        )
        while b"epoch" not in log.read_bytes() and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    listed = _trend(repo, "zoo", "list", "--home", str(home), "--json")
    names = [m["name"] for m in json.loads(listed.stdout or "[]")]
    held = FP in names and _weights(home).get(next(iter(before))) == before[next(iter(before))]
    return held, f"after SIGKILL mid-retrain: {FP} {'kept unchanged' if held else 'lost or changed'}"


SAVE_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    import torch
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo
    home, name = sys.argv[1], sys.argv[2]
    model = Zoo(home + "-source").load(name)
    replace = os.replace
    def replace_then_die(src, dst):
        replace(src, dst)
        if str(dst).endswith(".safetensors"):
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace_then_die
    Zoo(home).save(ModelSpec.parse(name), model, {"source": "killed"})
""")


def fault_killed_between_files(repo, work, places):
    home = work / "f-between"
    shutil.copytree(places["home"], str(home) + "-source")
    home.mkdir()
    subprocess.run([sys.executable, "-c", SAVE_AND_DIE, str(home), FP], env=_env(repo), capture_output=True, cwd=repo)
    listed = FP in [
        m["name"] for m in json.loads(_trend(repo, "zoo", "list", "--home", str(home), "--json").stdout or "[]")
    ]
    loads = _trend(repo, "eval", FP, "--home", str(home), "--device", "cpu", "--json").returncode == 0
    return listed == loads, f"killed once the weights were in place: listed={listed}, eval loads={loads}"


def _transfer(repo, home, *extra):
    return _trend(repo, "transfer", "--models", FP, Q1, "--home", str(home), "--json", *FAST, *extra)


def fault_cache_db(repo, work, places, how):
    home = _fresh_home(work, places, f"f-db-{how}")
    first = _transfer(repo, home)
    db = home / "cache" / "cache.db"
    data = bytearray(db.read_bytes())
    if how == "header":
        data[:4096] = bytes(range(256)) * 16
    else:
        del data[len(data) // 2 :]
    db.write_bytes(bytes(data))
    again = _transfer(repo, home)
    models = _trend(repo, "eval", FP, Q1, "--home", str(home), "--device", "cpu").returncode == 0
    before, after = _tm(first), _tm(again)
    held = before is not None and again.returncode == 0 and after == before and models
    return held, (
        f"cache.db {'first 4 KiB overwritten' if how == 'header' else 'truncated to half'}: exit "
        f"{again.returncode}, TM FP->Q1 {_pair(before)} before, {_pair(after)} after, models load "
        f"{models}"
    )


def _tm(proc) -> dict | None:
    """The TM matrix `trend transfer --json` printed (under "tm"), or None when there is none to read."""
    try:
        matrix = json.loads(proc.stdout)["tm"]
    except (ValueError, KeyError, TypeError):
        return None
    return matrix if isinstance(matrix, dict) and matrix else None


def _pair(matrix: dict | None) -> str:
    """TM of the pair FP -> Q1 from a TM matrix (labels FP-s0 and Q1-s0), for the report."""
    try:
        value = matrix["FP-s0"]["Q1-s0"]  # type: ignore[index]
    except (KeyError, TypeError):
        return "(none read)"
    return "NaN" if value is None else f"{value:.3f}"


def fault_flipped_summary(repo, work, places):
    """Flip 5 per-image verdicts inside the cached attack summary of one source, then rerun."""
    import numpy as np
    import torch

    home = _fresh_home(work, places, "f-flip")
    first = _transfer(repo, home)
    db = home / "cache" / "cache.db"
    rows = sqlite3.connect(db).execute("SELECT value FROM Cache WHERE value IS NOT NULL").fetchall()
    data, flipped = bytearray(db.read_bytes()), False
    for (blob,) in rows:
        blob = bytes(blob)
        start = blob.find(b"PK\x03\x04")  # torch.save's zip, after any framing
        try:
            value = torch.load(__import__("io").BytesIO(blob[start:]), weights_only=True)
        except Exception:  # noqa: S112  (an entry of another kind: not one this check reads)
            continue
        if not (isinstance(value, dict) and "success" in value):
            continue
        pattern = value["success"].numpy().astype(np.uint8).tobytes()
        at = data.find(pattern)
        if at < 0 or data.find(pattern, at + 1) >= 0:
            continue
        for i in range(5):
            data[at + 3 + 7 * i] ^= 1
        flipped = True
        break
    db.write_bytes(bytes(data))
    again = _transfer(repo, home)
    before, after = _tm(first), _tm(again)
    held = flipped and before is not None and again.returncode == 0 and after == before
    return held, (
        f"5 verdicts flipped in a cached attack summary (found: {flipped}): exit {again.returncode}, "
        f"TM FP->Q1 {_pair(before)} before, {_pair(after)} after"
    )


def fault_bad_metadata(repo, work, places):
    home = _fresh_home(work, places, "f-meta")
    meta = next((home / "models").glob("*.json"))
    meta.write_text("{ damaged")
    listed = _trend(repo, "zoo", "list", "--home", str(home))
    held = "damaged" in listed.stderr
    return held, f"unreadable metadata: zoo list {'names it as damaged' if held else 'hides it silently'}"


BARRIER = textwrap.dedent("""
    import os, sys, time
    import trend_core.attacks.base as base
    runs, run = [0], base.Attack.run
    def counted(self, *a, **k):
        runs[0] += 1
        return run(self, *a, **k)
    base.Attack.run = counted
    open(sys.argv[1], "w").close()
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    from trend_core.cli import main
    code = main(sys.argv[3:])
    print(f"attack runs: {runs[0]}", file=sys.stderr)
    sys.exit(code)
""")


def fault_concurrent(repo, work, places):
    home = _fresh_home(work, places, "f-concurrent")
    argv = ["transfer", "--models", FP, Q1, "--home", str(home), "--json", *FAST]
    flags = [work / "a.ready", work / "b.ready"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BARRIER, str(flags[i]), str(flags[1 - i]), *argv],
            env=_env(repo),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=repo,
        )
        for i in (0, 1)
    ]
    outs = [p.communicate() for p in procs]
    runs = sum(int(err.rsplit("attack runs: ", 1)[1].split()[0]) for _, err in outs if "attack runs: " in err)
    return runs == 2, f"two identical transfers at once (2 sources): {runs} attacks computed"


def fault_server(repo, work, places):
    import tomllib

    config = tomllib.loads((repo / ".streamlit" / "config.toml").read_text())
    address = config.get("server", {}).get("address", "(all interfaces)")
    upload = config.get("server", {}).get("maxUploadSize", 200)
    free_text = 'st.text_input("Store folder"' in (repo / "trend_ui" / "context.py").read_text()
    held = address == "127.0.0.1" and upload <= 100 and not free_text
    return held, f"server: address {address}, uploads up to {upload} MB, store folder free text: {free_text}"


# ----------------------------------------------------------------------------- the store
def _key(name: str) -> str:
    from trend_core.config.specs import ModelSpec  # (this checkout's; the key scheme is the store's format)

    return ModelSpec.parse(name).key


def _swap(a: Path, b: Path) -> None:
    parked = a.with_name(a.name + ".parked")
    a.rename(parked)
    b.rename(a)
    parked.rename(b)


def _mentions(text: str, name: str) -> bool:
    """Whether a message names a model, by its name or by its key in the store."""
    return name in text or _key(name) in text


def _list_flags(repo, home, *names) -> tuple[bool, str]:
    listed = _trend(repo, "zoo", "list", "--home", str(home))
    flagged = [n.split("/")[2] for n in names if _mentions(listed.stderr, n)]
    return len(flagged) == len(names), f"zoo list exit {listed.returncode} flags {flagged or 'nothing'}"


def _clean_sees(repo, home, *names) -> tuple[bool, str]:
    cleaned = _trend(repo, "zoo", "clean", "--home", str(home))
    seen = [n.split("/")[2] for n in names if _mentions(cleaned.stdout + cleaned.stderr, n)]
    return len(seen) == len(names), f"zoo clean exit {cleaned.returncode} names {seen or 'nothing'}"


def _eval(repo, home, name):
    return _trend(repo, "eval", name, "--home", str(home), "--device", "cpu")


def store_entries_swapped(repo, work, places):
    home = _fresh_home(work, places, "s-entries")
    for suffix in (".json", ".safetensors"):
        _swap(home / "models" / f"{_key(FP)}{suffix}", home / "models" / f"{_key(Q1)}{suffix}")
    loads = _eval(repo, home, FP)
    flags, listed = _list_flags(repo, home, FP, Q1)
    return _refused(loads) and flags, f"eval FP: {_outcome(loads)}; {listed}"


def damage_weights_swapped(repo, work, places):
    home = _fresh_home(work, places, "d-swapped")
    _swap(home / "models" / f"{_key(FP)}.safetensors", home / "models" / f"{_key(Q1)}.safetensors")
    loads = _eval(repo, home, FP)
    flags, listed = _list_flags(repo, home, FP, Q1)
    sees, cleaned = _clean_sees(repo, home, FP, Q1)
    return _refused(loads) and flags and sees, f"eval FP: {_outcome(loads)}; {listed}; {cleaned}"


def damage_weights_zeroed(repo, work, places):
    home = _fresh_home(work, places, "d-zeros")
    weights = home / "models" / f"{_key(FP)}.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))
    loads = _eval(repo, home, FP)
    flags, listed = _list_flags(repo, home, FP)
    sees, cleaned = _clean_sees(repo, home, FP)
    return _refused(loads) and flags and sees, f"eval FP: {_outcome(loads)}; {listed}; {cleaned}"


def damage_metadata_copied(repo, work, places):
    home = _fresh_home(work, places, "d-meta")
    shutil.copy2(home / "models" / f"{_key(FP)}.json", home / "models" / f"{_key(Q1)}.json")
    loads, healthy = _eval(repo, home, Q1), _eval(repo, home, FP)
    listed = _trend(repo, "zoo", "list", "--home", str(home))
    flags = _mentions(listed.stderr, Q1) or _mentions(listed.stderr, FP)
    held = _refused(loads) and healthy.returncode == 0 and flags
    return held, (
        f"eval Q1: {_outcome(loads)}; eval FP exit {healthy.returncode}; zoo list exit "
        f"{listed.returncode} flags the entry: {flags}"
    )


def user_file_kept(repo, work, places):
    home = _fresh_home(work, places, "u-backup")
    backup = home / "models" / "backup.json"
    backup.write_text('{"my": "notes"}')
    cleaned = _trend(repo, "zoo", "clean", "--home", str(home))
    kept = backup.exists() and backup.read_text() == '{"my": "notes"}'
    return kept and cleaned.returncode == 0, f"zoo clean {_outcome(cleaned)}; models/backup.json kept: {kept}"


def _env_home(repo, home: Path, *argv: str) -> tuple[bool, str]:
    proc = _trend(repo, *argv, env={"TREND_HOME": str(home)})
    said_empty = "empty" in proc.stdout.lower()
    return _refused(proc) and not said_empty, f"{' '.join(argv[:2])}: {_outcome(proc)}"


def env_home_file(repo, work, places):
    return _env_home(repo, Path(places["file"]), "zoo", "list")


def env_home_loop(repo, work, places):
    loop = work / "loop"
    loop.symlink_to(loop)
    return _env_home(repo, loop, "zoo", "list")


def _chattr(path: Path, flag: str) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def env_home_immutable(repo, work, places):
    home = work / "immutable"
    home.mkdir()
    if not _chattr(home, "+i"):
        return None, "chattr +i does not work here"
    try:
        return _env_home(repo, home, "train", TINY, "--device", "cpu")
    finally:
        _chattr(home, "-i")


def fs_cache_folder_a_file(repo, work, places):
    home = _fresh_home(work, places, "fs-cache-file")
    (home / "cache").write_text("")
    proc = _transfer(repo, home)
    return _refused(proc), f"transfer: {_outcome(proc)}"


def fs_cache_db_a_folder(repo, work, places):
    home = _fresh_home(work, places, "fs-db-folder")
    (home / "cache" / "cache.db").mkdir(parents=True)
    proc = _transfer(repo, home)
    return _refused(proc), f"transfer: {_outcome(proc)}"


def fs_json_to_full_disk(repo, work, places):
    home = _fresh_home(work, places, "fs-full")
    with open("/dev/full", "w") as full:
        proc = _trend(repo, "zoo", "list", "--json", "--home", str(home), stdout=full)
    return _refused(proc), f"zoo list --json > /dev/full: {_outcome(proc)}"


def _import_refused(repo, work, places, file):
    home = work / f"import-{file}"
    proc = _trend(repo, "zoo", "import", FP, str(Path(places["dir"]) / file), "--home", str(home))
    stored = sorted(p.name for p in (home / "models").glob("*.safetensors")) if (home / "models").exists() else []
    return _refused(proc) and not stored, f"import: {_outcome(proc)}; stored {len(stored)} weights file(s)"


# ----------------------------------------------------------------------------- Python API data
API_DRIVER = textwrap.dedent("""
    import json, sys
    import pandas as pd, torch
    torch.set_num_threads(1)
    import trend_core as tl
    import trend_core.attacks.base as base
    from trend_core.models.zoo import Zoo

    runs = [0]
    run = base.Attack.run
    def counted(self, *a, **k):
        runs[0] += 1
        return run(self, *a, **k)
    base.Attack.run = counted
    zoo = Zoo(sys.argv[1])
    fp, q1 = zoo.load(sys.argv[3]), zoo.load(sys.argv[4])
    x, y = tl.load_dataset("digits").tensors("test", 40)
    nan = x.clone()
    nan[3, 0, 2, 2] = float("nan")
    label10 = torch.where(torch.arange(len(y)) == 5, 10, y)
    rgb = torch.rand(len(y), 3, 32, 32)
    pgd = tl.PGD(eps=0.1, steps=5)
    tm = pd.DataFrame([[1, 0.2, float("inf")], [0.1, 1, 0.4], [0.2, 0.3, 1]], index=list("ABC"), columns=list("ABC"))
    cases = {
        "run_transfer(data=(x with one NaN pixel, y))": lambda: tl.run_transfer([fp, q1], pgd, data=(nan, y)),
        "run_transfer(data=(x * 255, y))": lambda: tl.run_transfer([fp, q1], pgd, data=(x * 255, y)),
        "run_transfer(data=(x, y with a label 10))": lambda: tl.run_transfer([fp, q1], pgd, data=(x, label10)),
        "run_transfer(data=(3x32x32 images, y)) on 1-channel models":
            lambda: tl.run_transfer([fp, q1], pgd, data=(rgb, y)),
        "robustness_sweep(data=(x with one NaN pixel, y))":
            lambda: tl.robustness_sweep([fp, q1], [0.1], ["agd"], data=(nan, y), steps=2),
        "fit_tm(data=(3x32x32 images, y))": lambda: tl.fit_tm(fp, q1, [0.05, 0.1, 0.2], data=(rgb, y)),
        "decision_boundary(image, label=10)": lambda: tl.decision_boundary([fp], x[0], 10, resolution=5),
        "select_ensembles(TM matrix holding inf)": lambda: tl.select_ensembles(tm, 2),
    }
    results = {}
    for name, call in cases.items():
        runs[0] = 0
        try:
            call()
            outcome, message = "accepted", ""
        except tl.TrendError as exc:
            outcome, message = "TrendError", str(exc)
        except Exception as exc:
            outcome, message = "traceback", f"{type(exc).__name__}: {exc}"
        results[name] = {"outcome": outcome, "message": message[:300], "attacks": runs[0]}
    json.dump(results, open(sys.argv[2], "w"))
""")


def api_checks(repo: Path, work: Path, places: dict, zoo_dir: Path) -> list[dict]:
    """Each Python call with bad data: expected a one-sentence TrendError before any attack ran."""
    out = work / "api.json"
    subprocess.run(
        [sys.executable, "-c", API_DRIVER, str(zoo_dir), str(out), FP, Q1], env=_env(repo), check=True, cwd=work
    )
    checks = []
    for name, r in json.loads(out.read_text()).items():
        one_sentence = r["outcome"] == "TrendError" and "\n" not in r["message"].strip()
        checks.append(
            _check(
                "API data checks",
                name,
                "TrendError (one sentence), no attack run",
                one_sentence and r["attacks"] == 0,
                f"{r['outcome']} after {r['attacks']} attack run(s): {r['message'][:150]}",
            )
        )
    return checks


# ----------------------------------------------------------------------------- the checks
FAULTS = [  # (class, what is tried, expected outcome, check(repo, work, places) -> (passed or None, what it saw))
    ("faults", "SIGKILL mid-retrain", "FP kept unchanged", fault_retrain_killed),
    ("faults", "killed once the weights were in place", "listed iff it loads", fault_killed_between_files),
    (
        "faults",
        "cache.db: first 4 KiB overwritten",
        "exit 0, the same TM, models load",
        lambda *a: fault_cache_db(*a, "header"),
    ),
    (
        "faults",
        "cache.db: truncated to half",
        "exit 0, the same TM, models load",
        lambda *a: fault_cache_db(*a, "half"),
    ),
    ("faults", "5 verdicts flipped in a cached attack summary", "exit 0, the same TM", fault_flipped_summary),
    ("faults", "unreadable metadata", "zoo list names it as damaged", fault_bad_metadata),
    ("faults", "two identical transfers at once", "each attack computed once", fault_concurrent),
    ("faults", "the dashboard's server settings", "loopback only, uploads <= 100 MB", fault_server),
    (
        "store mix-ups",
        "FP's and Q1's whole entries stored under each other's key",
        "eval refused; zoo list flags both",
        store_entries_swapped,
    ),
    (
        "content damage",
        "FP's and Q1's weights files swapped",
        "eval refused; list and clean name both",
        damage_weights_swapped,
    ),
    (
        "content damage",
        "FP's weights overwritten with zeros of the same size",
        "eval refused; list and clean name it",
        damage_weights_zeroed,
    ),
    (
        "content damage",
        "FP's metadata copied over Q1's",
        "eval Q1 refused, FP still loads; list flags it",
        damage_metadata_copied,
    ),
    ("user files in the store", "a user's models/backup.json", "it survives zoo clean", user_file_kept),
    ("env-derived stores", "TREND_HOME a file: zoo list", "refused, never 'the zoo is empty'", env_home_file),
    ("env-derived stores", "TREND_HOME a symlink loop: zoo list", "refused, never 'the zoo is empty'", env_home_loop),
    ("env-derived stores", "TREND_HOME an immutable folder: train", "refused", env_home_immutable),
    ("filesystem faults", "cache folder a file: transfer", "refused", fs_cache_folder_a_file),
    ("filesystem faults", "cache/cache.db a folder: transfer", "refused", fs_cache_db_a_folder),
    ("filesystem faults", "zoo list --json > /dev/full", "refused", fs_json_to_full_disk),
    (
        "NaN-output imports",
        "import: BatchNorm running_var -1 (finite weights, NaN outputs)",
        "refused, nothing stored",
        lambda *a: _import_refused(*a, "negative_var.safetensors"),
    ),
    (
        "NaN-output imports",
        "import: weights of 3e38 (outputs overflow)",
        "refused, nothing stored",
        lambda *a: _import_refused(*a, "huge.safetensors"),
    ),
]


def _check(klass: str, name: str, expected: str, passed: bool | None, seen: str) -> dict:
    return {
        "class": klass,
        "check": name,
        "expected": expected,
        "result": "skipped" if passed is None else "PASS" if passed else "FAIL",
        "seen": seen,
    }


def input_checks(results: list[dict]) -> list[dict]:
    return [
        _check(
            "bad CLI input",
            " ".join(r["argv"])[:110],
            "refused",
            classify(r) == "refused",
            f"{classify(r)}: {(r['stderr'].strip().splitlines() or [''])[-1][:150]}",
        )
        for r in results
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(HERE), help="checkout whose trend_core is tried (default: this one)")
    parser.add_argument("--zoo", default=str(HERE / ".trend-home" / "test-zoo"), help="trained test zoo to copy")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="WORD",
        help="run only the classes whose name holds one of these words (e.g. store api input)",
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every check to FILE as JSON")
    parser.add_argument(
        "--case-limit",
        type=int,
        default=60,
        help="seconds a bad input may run before it counts as accepted (default 60)",
    )
    args = parser.parse_args()
    repo = Path(args.repo).resolve()

    def wanted(klass: str) -> bool:
        return args.only is None or any(word.lower() in klass.lower() for word in args.only)

    checks: list[dict] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trend-hostile-") as tmp:
        work = Path(tmp)
        DEFAULT_HOME[0] = str(work / "default-home")
        places = prepare(work, Path(args.zoo))
        if wanted("bad CLI input"):
            checks += input_checks(run_bad_inputs(repo, work, places, args.case_limit))
        for klass, name, expected, check in FAULTS:
            if wanted(klass):
                passed, seen = check(repo, work, places)
                checks.append(_check(klass, name, expected, passed, seen))
        if wanted("API data checks"):
            checks += api_checks(repo, work, places, Path(args.zoo))
        subprocess.run(["chattr", "-R", "-i", tmp], capture_output=True)
    for c in checks:
        if c["result"] != "PASS" or c["class"] != "bad CLI input":  # (passing bad inputs are only counted)
            print(f"{c['result']:>7}  {c['class']}: {c['check']}\n         expected {c['expected']}; {c['seen']}")
    print()
    for klass in dict.fromkeys(c["class"] for c in checks):
        mine = [c["result"] for c in checks if c["class"] == klass]
        print(
            f"{klass:>24}: {mine.count('PASS')} of {len(mine)} pass"
            + (f" ({mine.count('skipped')} skipped)" if "skipped" in mine else "")
        )
    passed = sum(c["result"] == "PASS" for c in checks)
    print(f"{'all':>24}: {passed} of {len(checks)} pass in {time.perf_counter() - start:.0f} s")
    print(f"repo {repo}; {os.popen('uptime').read().strip()}")
    if args.json:
        Path(args.json).write_text(json.dumps(checks, indent=1))


if __name__ == "__main__":
    main()
