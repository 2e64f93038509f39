"""Start `streamlit run app.py` on a free localhost port with its own TREND_HOME and wait until it answers; for
the browser test and the defender walkthrough, which drive it with headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
# headless Chromium for a sandboxed machine without a GPU or a network beyond localhost (Playwright's launch args)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A localhost port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(home: Path, log: IO[str], timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """The running server and its URL, the dashboard's jobs in the background as a user gets them; its output
    goes to ``log``. Raises RuntimeError (the server stopped, or did not answer within ``timeout`` s)."""
    port = free_port()
    env = {**os.environ, "TREND_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TREND_JOBS_SYNC", None)  # real background jobs
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"streamlit did not answer at {url} within {timeout:.0f} s")
