"""The defender path in a real browser, for the README's screenshots:

    python scripts/defender_walkthrough.py [--home /tmp/trend-defender] [--out docs/screenshots]

Builds a store folder with the digits preset (trained when missing) plus the two networks of
``scripts/defender_example.py`` imported as user/digits/seq-cnn and user/digits/tiny-resnet, runs the transfer run
the Transferability page asks for by default over every model (so the page shows it at once), starts
`streamlit run app.py` on it and walks headless Chromium (Playwright) through the path, saving
defender-zoo.png, defender-matrix.png, defender-trend.png, defender-audit.png and defender-export.png.
Needs Chromium at /usr/bin/chromium (or --chromium) and `pip install playwright`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import app_server  # noqa: E402  (this script's folder, scripts/, is on the path when it runs)

WIDTH, HEIGHT = 1280, 1000
WAIT_MS = 900_000  # a job on a loaded 2-core CPU


def prepare(home: Path) -> None:
    """The digits preset, the two example networks imported, and the Transferability page's default run."""
    os.environ["TREND_HOME"] = str(home)
    os.environ["TREND_JOBS_SYNC"] = "1"  # the run below finishes before this returns
    from trend_core.attacks.settings import attack_settings
    from trend_core.models.zoo import Zoo, preset_specs
    from trend_core.service.transfer import submit_transfer
    from trend_core.storage.store import get_store

    zoo = Zoo(home)
    zoo.train_many(preset_specs("digits"), device="cpu")
    nets = home / "defender-nets"
    if not zoo.has("user/digits/tiny-resnet"):
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "defender_example.py"), str(nets)],
            check=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        zoo.import_program("user/digits/seq-cnn", nets / "seq_cnn.pt2", "pixels", replace=True)
        zoo.import_program(
            "user/digits/tiny-resnet", nets / "tiny_resnet.pt2", "normalized", [0.5], [0.25], replace=True
        )
    names = [m["name"] for m in zoo.list("digits", imported_networks=True)]
    settings = attack_settings("pgd", "digits")  # the page's defaults: eps rounded as its slider shows it
    params = settings.complete(eps=float(round(settings.eps.default, 4)), steps=int(settings.setting("steps").default))
    submit_transfer(zoo, get_store(home), names, names, "pgd", params, limit=360, device="auto", profile="paper")


def start_app(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    try:
        return app_server.start_app(home, log.open("w"), timeout=120)
    except RuntimeError as exc:
        raise SystemExit(f"{exc}; see {log}") from None


def settled(page) -> None:
    """The script run is over (no status widget) and two frames were painted."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=WAIT_MS)
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def shot(page, out: Path, name: str) -> None:
    settled(page)
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
        "[data-testid=stAppViewContainer], section')].map(e => e.scrollHeight), 0)"
    )
    page.set_viewport_size({"width": WIDTH, "height": int(min(max(height, HEIGHT), 8000))})
    settled(page)
    page.screenshot(path=str(out / f"defender-{name}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    print(f"saved {out / f'defender-{name}.png'}", flush=True)


def goto(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    settled(page)


def walk(page, url: str, out: Path) -> None:
    page.goto(url)
    page.get_by_role("heading", name="TREND Lab").wait_for(timeout=180_000)
    settled(page)
    goto(page, "Model zoo")
    page.get_by_text("14 of 14 models").wait_for(timeout=120_000)  # (the table is a canvas: no text to find)
    page.get_by_label("Name contains").fill("user/")  # the imported networks
    page.get_by_label("Name contains").press("Enter")
    page.get_by_text("2 of 14 models").wait_for(timeout=120_000)
    shot(page, out, "zoo")

    goto(page, "Transferability")
    page.get_by_role("button", name="Run transfer").click()  # the prepared run: answered from the store
    page.get_by_text("Transferability: PGD").first.wait_for(timeout=WAIT_MS)
    shot(page, out, "matrix")

    goto(page, "TREND builder")
    page.get_by_text("TREND's ranking").first.wait_for(timeout=WAIT_MS)
    limit = page.get_by_role("spinbutton", name="Images attacked")
    limit.fill("20")
    limit.press("Tab")  # commits the number: the sections below then say 20 images
    page.get_by_text("on the first 20 test images").wait_for(timeout=120_000)
    settled(page)
    shot(page, out, "trend")

    page.get_by_role("button", name="Audit the ensemble and its members").click()
    page.get_by_text("Under the audit's worst case").first.wait_for(timeout=WAIT_MS)  # (its table is a canvas)
    page.get_by_role("heading", name="4. Is this robustness real?").scroll_into_view_if_needed()
    shot(page, out, "audit")

    page.get_by_role("button", name="Export with its robustness card").click()
    page.get_by_role("button", name="Download ensemble.pt2").wait_for(timeout=WAIT_MS)
    shot(page, out, "export")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default="/tmp/trend-defender-walkthrough", help="the store folder to build and use")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"), help="where the PNGs go")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    home, out = Path(args.home), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    prepare(home)
    print(f"store folder ready in {time.monotonic() - started:.0f} s", flush=True)
    proc, url = start_app(home, home / "streamlit.log")
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="trend-chromium-") as profile:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=args.chromium,
                args=app_server.CHROMIUM_ARGS,
                headless=True,
                viewport={"width": WIDTH, "height": HEIGHT},
            )
            context.set_default_timeout(120_000)
            page = context.pages[0] if context.pages else context.new_page()
            try:
                walk(page, url, out)
            except BaseException:
                page.screenshot(path=str(home / "walkthrough-failure.png"), full_page=True)
                raise
            finally:
                context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
