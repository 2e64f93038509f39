"""The `trend` command leaves without the interpreter's teardown (``trend_core.cli.leave``): the same output, exit
status and stored results as the ordinary exit, and the ordinary exit where another thread still works."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from conftest import FP, Q2, REPO

from trend_core.cli.leave import SLOW_EXIT_ENV, others_running


def _trend(*args: str, home, slow: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TREND_HOME": str(home)}
    env.pop(SLOW_EXIT_ENV, None)
    if slow:
        env[SLOW_EXIT_ENV] = "1"
    return subprocess.run(
        [sys.executable, "-m", "trend_core", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_a_transfer_run_prints_and_stores_the_same_as_the_ordinary_exit(linked_zoo_home, tmp_path):
    run = ["transfer", "--models", FP, Q2, "--attack", "pgd", "--steps", "2", "--limit", "16", "--device", "cpu"]
    fast = _trend(*run, home=linked_zoo_home)
    assert fast.returncode == 0, fast.stderr[-2000:]
    assert "col_avg" in fast.stdout  # the whole table came out before the process ended
    stored = _keys(linked_zoo_home)
    assert len(stored) >= 4  # both sources' attacks (images and outcomes) were written to the store
    again = _trend(*run, home=linked_zoo_home, slow=True)  # the ordinary exit, reading what the first one stored
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout == fast.stdout
    assert _keys(linked_zoo_home) == stored  # nothing was missing, so nothing was attacked again


def _keys(home) -> list[str]:
    from trend_core.storage.store import Store

    store = Store(home)
    try:
        return sorted(store.keys())
    finally:
        store.close()


def test_bad_input_still_exits_2_with_one_line(tmp_path):
    done = _trend("transfer", "--models", "nope", home=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("trend: error: ") and done.stderr.count("\n") == 1, done.stderr


LEAVING = """
import atexit, sys, threading, time
from pathlib import Path
from trend_core.cli.leave import leave
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
class Noticed:  # a global whose finalizer only the interpreter's teardown would run
    def __del__(self):
        (out / "teardown").write_text("ran")
noticed = Noticed()
if sys.argv[2] == "thread":  # a thread still writing when the command ends
    threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done"))).start()
print("printed")
leave(3)
"""


@pytest.mark.parametrize("other_thread", [False, True])
def test_leaving_runs_the_exit_handlers_and_waits_for_a_working_thread(tmp_path, other_thread):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(SLOW_EXIT_ENV, None)
    mode = "thread" if other_thread else "alone"
    done = subprocess.run([sys.executable, "-c", LEAVING, str(tmp_path), mode], env=env, capture_output=True, text=True)
    assert done.returncode == 3 and done.stdout == "printed\n", done.stderr
    assert (tmp_path / "atexit").read_text() == "ran"  # exit handlers run (logging's flush, Ray's shutdown, ...)
    if other_thread:  # the ordinary exit: the thread finished its write
        assert (tmp_path / "thread").read_text() == "done"
    else:  # no teardown
        assert not (tmp_path / "teardown").exists()


def test_others_running_sees_a_working_thread():
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=False)
    worker.start()
    try:
        assert others_running()
    finally:
        release.set()
        worker.join()
