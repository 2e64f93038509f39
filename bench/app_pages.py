"""Page-render benchmark: how long each dashboard page takes to render under AppTest once its results are
cached (target < 1 s per page).

    python bench/app_pages.py            # every page of app.py, 5 timed renders each
    python bench/app_pages.py --runs 9
    python bench/app_pages.py --defaults HOME   # each page's default run, timed, on the zoo in HOME
    python bench/app_pages.py --zoo-button default   # the Overview's starter-zoo button, timed on an empty store
    python bench/app_pages.py --warm HOME       # the demo warm-up on the zoo in HOME, then each page after it

--defaults copies the models of HOME (e.g. the digits preset that `trend reproduce --scale quick --home HOME`
trains) into an empty store and clicks each page's run buttons without touching a setting: the time a new
user waits for each page's default run on this machine (nothing cached; jobs synchronous). --zoo-button
clicks "Build the default digits zoo" (default) or "Quick demo zoo" (demo) on the Overview of an empty store
and times the training it starts. --warm copies HOME's models into an empty store, times the warm-up
(trend_core.service.warmup: every page's default run), then each page's first render and each press of its run
buttons, in the same server process and again after a restart (a fresh job manager: results from the store);
target < 1 s each. Pages or buttons a checkout lacks are reported as absent, so the same
script times an older checkout (copy it there) for before/after figures.

The store is a temporary folder whose models/ is a copy of the test zoo (.trend-home/test-zoo; trained on
first use). Each page is rendered once to warm up (for Transferability: a small transfer run is launched and
finished; the other pages click their own run buttons with small settings), then re-rendered; the median
of the timed renders is reported, with the number of charts the page shows. Jobs run synchronously.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

MODELS = (
    "digits/resnet18-w0.25/FP/sgd/s0",
    "digits/resnet18-w0.25/FP/sgd/s1",
    "digits/resnet18-w0.25/Q1/sgd/s0",
    "digits/resnet18-w0.25/Q2/sgd/s0",
)
TARGET_S = 1.0


def prepare_home(home: Path) -> None:
    """Copy the test zoo's models (training any missing ones there first) into ``home``/models."""
    from conftest import TEST_ZOO_DIR

    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo

    test_zoo = Zoo(TEST_ZOO_DIR)
    (home / "models").mkdir(parents=True)
    for name in MODELS:
        test_zoo.get_or_train(name, device="cpu")
        key = ModelSpec.parse(name).key
        for suffix in (".json", ".safetensors"):
            shutil.copy2(test_zoo.models_dir / f"{key}{suffix}", home / "models" / f"{key}{suffix}")


def warm_transferability(at) -> None:
    """Launch (and, jobs being synchronous, finish) a small transfer run, so later renders show a cached result."""
    at.slider(key="tr_limit").set_value(60)
    at.number_input(key="tr_steps_pgd").set_value(10)
    at.button(key="tr_run").click().run()


def warm_decision_boundary(at) -> None:
    at.button(key="db_run").click().run()


def warm_ensemble_attacks(at) -> None:
    at.number_input(key="ea_steps").set_value(10)
    at.number_input(key="ea_limit").set_value(60)
    at.button(key="ea_run").click().run()


def warm_trend_builder(at) -> None:
    """A transfer run launched from the page, then the chosen ensemble's evaluation and the growth curve."""
    at.number_input(key="tb_pool_steps").set_value(10)
    at.number_input(key="tb_pool_limit").set_value(60)
    at.button(key="tb_launch").click().run()
    at.number_input(key="tb_steps").set_value(10)
    at.number_input(key="tb_limit").set_value(60)
    at.button(key="tb_eval").click().run()
    at.button(key="tb_grow").click().run()


def warm_tm_curve(at) -> None:
    at.number_input(key="tc_steps").set_value(10)
    at.number_input(key="tc_limit").set_value(60)
    at.number_input(key="tc_points").set_value(8)
    at.button(key="tc_run").click().run()


WARMUPS = {
    "pages/transferability.py": warm_transferability,
    "pages/decision_boundary.py": warm_decision_boundary,
    "pages/ensemble_attacks.py": warm_ensemble_attacks,
    "pages/trend_builder.py": warm_trend_builder,
    "pages/tm_curve.py": warm_tm_curve,
}


def page_list() -> list[tuple[str | None, str]]:
    """Overview plus the page files of app.PAGES that exist (read from app.py's source, not imported)."""
    import ast

    tree = ast.parse((REPO / "app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PAGES" for t in node.targets):
            entries = ast.literal_eval(node.value)
            return [(None, "Overview")] + [(p, t) for p, t, _ in entries if (REPO / p).exists()]
    raise SystemExit("app.py has no PAGES table")


def bench_page(path: str | None, runs: int) -> tuple[float, float, int, list[str]]:
    """(seconds of the warm-up render, median seconds of the timed renders, charts shown, problems on the page)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600).run()
    start = time.perf_counter()
    if path is not None:
        at.switch_page(path).run()
    problems = []
    if path in WARMUPS:
        try:
            WARMUPS[path](at)
        except Exception as exc:  # a page changed its widgets: report, still time its render
            problems.append(f"warm-up failed ({type(exc).__name__}: {exc})")
    first = time.perf_counter() - start
    charts = len(at.get("plotly_chart"))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    problems += [e.value for e in at.exception] + [e.value for e in at.error]
    return first, statistics.median(times), charts, problems


# page -> its run buttons in the order a user clicks them (the TREND builder needs its transfer run first)
DEFAULT_RUNS = {
    "pages/transferability.py": ["tr_run"],
    "pages/decision_boundary.py": ["db_run"],
    "pages/ensemble_attacks.py": ["ea_run"],
    "pages/trend_builder.py": ["tb_launch", "tb_eval", "tb_rank", "tb_grow", "tb_audit"],
    "pages/tm_curve.py": ["tc_run"],
    "pages/audit.py": ["au_run"],
}


def bench_defaults(source_home: Path) -> None:
    """Seconds of each page's default run (each button of DEFAULT_RUNS, clicked with the page's defaults)."""
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(source_home / "models", home / "models")
        os.environ["TREND_HOME"] = str(home)
        os.environ["TREND_JOBS_SYNC"] = "1"
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"Each page's default run on the zoo of {source_home} (nothing cached; load average {load})")
        print(f"{'page':<20}{'button':<14}{'seconds':>9}  page shows")
        for path, keys in DEFAULT_RUNS.items():
            if not (REPO / path).exists():
                print(f"{path.split('/')[-1][:-3]:<20}{'-':<14}{'-':>9}  absent in this checkout", flush=True)
                continue
            at = AppTest.from_file(str(REPO / "app.py"), default_timeout=3600).run()
            at.switch_page(path).run()
            for key in keys:
                if not any(getattr(b, "key", None) == key for b in at.button):
                    print(f"{path.split('/')[-1][:-3]:<20}{key:<14}{'-':>9}  absent in this checkout", flush=True)
                    continue
                start = time.perf_counter()
                at.button(key=key).click().run()
                seconds = time.perf_counter() - start
                shown = [e.value for e in at.exception] + [e.value for e in at.error]
                print(
                    f"{path.split('/')[-1][:-3]:<20}{key:<14}{seconds:>9.1f}  {shown[0][:80] if shown else 'ok'}",
                    flush=True,
                )


def bench_warm(source_home: Path) -> None:
    """Seconds of the warm-up on HOME's models, then of each page's first render and button presses after it."""
    from streamlit.testing.v1 import AppTest

    from trend_core.models.zoo import Zoo
    from trend_core.runtime.jobs import get_manager, reset_manager
    from trend_core.service.warmup import submit_warmup
    from trend_core.storage.store import get_store

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(source_home / "models", home / "models")
        os.environ["TREND_HOME"] = str(home)
        os.environ["TREND_JOBS_SYNC"] = "1"
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        start = time.perf_counter()
        warm = submit_warmup(Zoo(home), get_store(home), "digits")
        seconds = time.perf_counter() - start
        print(
            f"Warm-up on the zoo of {source_home}: {seconds:.1f} s, {len(warm.result['done'])} runs "
            f"(load average before {load}){'; failed: ' + '; '.join(warm.result['failed']) if warm.result['failed'] else ''}",
            flush=True,
        )
        for job in sorted(get_manager().jobs(), key=lambda j: j.created):
            if job.kind != "warmup":
                print(f"  {job.elapsed:7.1f} s  {job.title}", flush=True)
        print(f"{'page':<20}{'server':<9}{'first render s':>15}{'presses s':>12}  page shows")
        for restarted in (False, True):
            for path, keys in DEFAULT_RUNS.items():
                if restarted:
                    reset_manager()  # a restarted server: only the results store remembers
                known = {job.key for job in get_manager().jobs()}
                start = time.perf_counter()
                at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600).run()
                at.switch_page(path).run()
                first = time.perf_counter() - start
                presses = []
                for key in keys:
                    start = time.perf_counter()
                    at.button(key=key).click().run()
                    presses.append(time.perf_counter() - start)
                new = {job.key for job in get_manager().jobs()} - known
                computed = [j.title for j in get_manager().jobs() if j.key in new and not j.from_store]
                shown = [e.value for e in at.exception] + [e.value for e in at.error]
                verdict = (f"COMPUTED {computed}" if computed else "") + (shown[0][:80] if shown else "")
                print(
                    f"{path.split('/')[-1][:-3]:<20}{'restarted' if restarted else 'same':<9}{first:>15.2f}"
                    f"{max(presses):>12.2f}  {verdict or 'ok'}",
                    flush=True,
                )


ZOO_BUTTONS = {"default": "build_default_zoo", "demo": "build_demo_zoo"}


def bench_zoo_button(which: str) -> None:
    """Seconds from clicking an Overview starter-zoo button on an empty store until its training job is done."""
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TREND_HOME"] = str(Path(tmp) / "home")
        os.environ["TREND_JOBS_SYNC"] = "1"
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=3600).run()
        start = time.perf_counter()
        at.button(key=ZOO_BUTTONS[which]).click().run()
        seconds = time.perf_counter() - start
        models = sorted(p.stem for p in (Path(tmp) / "home" / "models").glob("*.json"))
        shown = [e.value for e in at.exception] + [e.value for e in at.error]
        print(
            f"Overview button {ZOO_BUTTONS[which]!r}: {seconds:.1f} s for {len(models)} models "
            f"(load average before {load}){'; page shows: ' + shown[0][:90] if shown else ''}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed renders per page (median reported)")
    parser.add_argument(
        "--defaults",
        metavar="HOME",
        default=None,
        help="time each page's default run on the models of HOME instead of cached renders",
    )
    parser.add_argument(
        "--zoo-button",
        choices=sorted(ZOO_BUTTONS),
        default=None,
        help="time the Overview's starter-zoo button on an empty store",
    )
    parser.add_argument(
        "--warm",
        metavar="HOME",
        default=None,
        help="time the demo warm-up on the models of HOME, then each page after it",
    )
    args = parser.parse_args()
    if args.warm:
        bench_warm(Path(args.warm))
        return
    if args.zoo_button:
        bench_zoo_button(args.zoo_button)
        return
    if args.defaults:
        bench_defaults(Path(args.defaults))
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        prepare_home(home)
        os.environ["TREND_HOME"] = str(home)
        os.environ["TREND_JOBS_SYNC"] = "1"
        print(f"AppTest render time per page, results cached ({args.runs} renders, median; target < {TARGET_S:.0f} s)")
        print(f"{'page':<22}{'warm-up s':>11}{'cached render s':>17}{'charts':>8}  verdict")
        for path, title in page_list():
            first, cached, charts, problems = bench_page(path, args.runs)
            verdict = "ok" if cached < TARGET_S else "SLOW"
            if problems:
                verdict += f" (page shows: {problems[0][:90]})"
            print(f"{title:<22}{first:>11.2f}{cached:>17.3f}{charts:>8}  {verdict}", flush=True)


if __name__ == "__main__":
    main()
