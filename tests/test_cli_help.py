"""`trend --help` answers without importing PyTorch or pandas (it took ~5 s when torch came first)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_help_builds_every_parser_without_torch_or_pandas():
    code = (
        "import sys; from trend_core.cli import build_parser; parser = build_parser(); "
        "text = parser.format_help(); "
        "heavy = sorted(m for m in ('torch', 'pandas', 'torchvision') if m in sys.modules); "
        "print(','.join(heavy) or 'light'); print('transfer' in text and 'zoo' in text)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["light", "True"]


def test_cli_device_choices_match_the_engines():
    from trend_core.cli.common import DEVICE_CHOICES
    from trend_core.runtime.devices import DEVICE_CHOICES as ENGINE

    assert DEVICE_CHOICES == ENGINE


def test_preset_choices_come_from_the_torch_free_module():
    from trend_core.config import presets
    from trend_core.models import zoo

    assert zoo.PRESETS is presets.PRESETS and "digits" in presets.PRESETS
