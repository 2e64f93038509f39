#!/usr/bin/env bash
# One entry point for the README's two commands:
#   bash scripts/dev.sh app    install (once) and start the dashboard on the embedded digits dataset
#   bash scripts/dev.sh test   install (once, with test extras and Chromium) and run the whole test suite
# TREND_TORCH_INDEX=URL installs the pinned torch and torchvision from that package index first, e.g.
# https://download.pytorch.org/whl/cpu for the CPU-only wheels (PyPI's default build brings ~6 GB of CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TREND_VENV:-$PWD/.venv}"
PY="${PYTHON:-python3}"

install_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
  if [ -n "${TREND_TORCH_INDEX:-}" ]; then  # the pins stay in requirements.txt; 2.14.1+cpu satisfies ==2.14.1
    "$VENV/bin/python" -m pip install -q $(grep -E '^(torch|torchvision)==' requirements.txt) \
      --index-url "$TREND_TORCH_INDEX"
  fi
  "$VENV/bin/python" -m pip install -q -r requirements.txt "$@"
  "$VENV/bin/python" -m pip install -q --no-deps -e .
}

install_chromium() {
  if [ -x /usr/bin/chromium ]; then return 0; fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver) >/tmp/trend-apt.log 2>&1 \
      || echo "warning: could not install Chromium (see /tmp/trend-apt.log); browser tests will report it" >&2
  else
    echo "warning: Chromium not found and apt-get unavailable; browser tests will be skipped" >&2
  fi
}

case "${1:-}" in
  app)
    install_python
    shift
    exec "$VENV/bin/python" -m streamlit run app.py --server.headless true "$@"
    ;;
  test)
    install_python -r requirements-test.txt
    install_chromium
    shift
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh app|test [extra arguments]" >&2
    exit 2
    ;;
esac
