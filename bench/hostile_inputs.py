"""Replay bad CLI input, kills, byte corruption and a concurrent run against a checkout, and count outcomes.

    python bench/hostile_inputs.py                     # this checkout
    python bench/hostile_inputs.py --repo /tmp/main    # another one (e.g. `git archive main | tar -x -C /tmp/main`)

Bad inputs run in one process through ``trend_core.cli.main`` (so an exception is seen as a traceback) and are
classed as: refused (exit 2, one line "trend: error: ...", before any training or attack), refused late (the
same after work had started), usage (argparse's usage error, exit 2), accepted (exit 0: bad input taken as
good) or traceback. Faults run in subprocesses against a store holding two trained test-zoo digits models
(FP and Q1, from .trend-home/test-zoo, trained on first use) and are classed held or failed.
"""
from __future__ import annotations

import argparse
import collections
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
    import trend_core.train as train
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
    from trend_core.specs import ModelSpec
    from trend_core.zoo import Zoo

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
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
              str(files / "nan.safetensors"))
    save_file({k: v.to(torch.int8) if v.is_floating_point() else v for k, v in state.items()},
              str(files / "int8.safetensors"))
    good = "source,A,B,C\nA,1,0.2,0.3\nB,0.1,1,0.4\nC,0.2,0.3,1\n"
    for name, text in {"good": good, "text_long": "source,target,tm\nA,B,high\nB,A,0.1\nA,A,1\nB,B,1\n",
                       "negative": good.replace("0.2,0.3\n", "-1e300,0.3\n", 1), "inf": good.replace("0.4", "inf"),
                       "above_one": good.replace("0.4", "1.5"),
                       "missing_column": "source,A,B\nA,1,0.2\nB,0.1,1\nC,0.2,0.3\n"}.items():
        (files / f"{name}.csv").write_text(text)
    return {"home": str(home), "file": str(work / "plain-file"), "dir": str(files)}


def run_bad_inputs(repo: Path, work: Path, places: dict, limit_s: int) -> list[dict]:
    cases = [[a.format(**places) for a in argv] for argv in BAD_INPUTS]
    (work / "cases.json").write_text(json.dumps(cases))
    subprocess.run([sys.executable, "-c", DRIVER, str(work / "cases.json"), str(work / "results.json"), str(limit_s)],
                   env=_env(repo), check=True, cwd=work)
    return json.loads((work / "results.json").read_text())


def _env(repo: Path) -> dict:
    """The environment of a child run against ``repo`` (children also start in ``repo``: ``python -m`` and
    ``-c`` put the working folder first on sys.path)."""
    return {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}


def _trend(repo: Path, *argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trend_core", *argv], env=_env(repo), capture_output=True,
                          text=True, timeout=timeout, cwd=repo)


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
        proc = subprocess.Popen([sys.executable, "-m", "trend_core", "train", "--force", FP, "--home", str(home),
                                 "--device", "cpu"], stderr=err, stdout=subprocess.DEVNULL, env=_env(repo),
                                cwd=repo)
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
    from trend_core.specs import ModelSpec
    from trend_core.zoo import Zoo
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
    listed = FP in [m["name"] for m in json.loads(_trend(repo, "zoo", "list", "--home", str(home), "--json").stdout
                                                  or "[]")]
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
        del data[len(data) // 2:]
    db.write_bytes(bytes(data))
    again = _transfer(repo, home)
    models = _trend(repo, "eval", FP, Q1, "--home", str(home), "--device", "cpu").returncode == 0
    held = again.returncode == 0 and _tm(again) == _tm(first) and models
    return held, (f"cache.db {'first 4 KiB overwritten' if how == 'header' else 'truncated to half'}: exit "
                  f"{again.returncode}, same TM {_tm(again) == _tm(first)}, models load {models}; "
                  f"{(again.stderr.strip().splitlines() or [''])[-1][:140]}")


def _tm(proc) -> object:
    try:
        return json.loads(proc.stdout)["matrix"]
    except (ValueError, KeyError, TypeError):
        return None


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
        except Exception:
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
    held = flipped and again.returncode == 0 and _tm(again) == _tm(first)
    return held, (f"5 verdicts flipped in a cached attack summary (found: {flipped}): TM "
                  f"{'unchanged' if _tm(again) == _tm(first) else 'changed'}, exit {again.returncode}")


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
    procs = [subprocess.Popen([sys.executable, "-c", BARRIER, str(flags[i]), str(flags[1 - i]), *argv],
                              env=_env(repo), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo)
             for i in (0, 1)]
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


FAULTS = [fault_retrain_killed, fault_killed_between_files, lambda *a: fault_cache_db(*a, "header"),
          lambda *a: fault_cache_db(*a, "half"), fault_flipped_summary, fault_bad_metadata, fault_concurrent,
          fault_server]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(HERE), help="checkout whose trend_core is tried (default: this one)")
    parser.add_argument("--zoo", default=str(HERE / ".trend-home" / "test-zoo"), help="trained test zoo to copy")
    parser.add_argument("--no-faults", action="store_true", help="bad inputs only")
    parser.add_argument("--no-inputs", action="store_true", help="faults only")
    parser.add_argument("--case-limit", type=int, default=60,
                        help="seconds a bad input may run before it counts as accepted (default 60)")
    args = parser.parse_args()
    repo = Path(args.repo).resolve()
    with tempfile.TemporaryDirectory(prefix="trend-hostile-") as tmp:
        work = Path(tmp)
        places = prepare(work, Path(args.zoo))
        start = time.perf_counter()
        results = [] if args.no_inputs else run_bad_inputs(repo, work, places, args.case_limit)
        counts = collections.Counter(classify(r) for r in results)
        for r in results:
            if classify(r) != "refused":
                line = (r["stderr"].strip().splitlines() or [""])[-1][:150]
                print(f"{classify(r):>12}  {' '.join(r['argv'])[:90]}\n              {line}")
        print(f"\nbad inputs ({len(results)}, {time.perf_counter() - start:.0f} s): "
              + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
        if not args.no_faults:
            held = 0
            for fault in FAULTS:
                ok, what = fault(repo, work, places)
                held += ok
                print(f"{'held' if ok else 'FAILED':>6}  {what}")
            print(f"faults: held {held} of {len(FAULTS)}")
    print(f"repo {repo}; {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
