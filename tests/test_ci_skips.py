"""In CI (CI=true) a test that skips for a reason outside the project fails; a missing GPU stays a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")


def run_pytest(folder: Path, ci: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def test_a_skip_fails_in_ci_unless_it_is_the_gpu(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n"
        "def test_needs_a_webui():\n    pytest.skip('SD_WEBUI_DIR does not point at a WebUI v1.10.1 checkout')\n\n"
        "def test_needs_a_gpu():\n    pytest.skip('needs a CUDA GPU')\n"
    )
    assert run_pytest(tmp_path, ci=False).startswith("2 skipped")
    summary = run_pytest(tmp_path, ci=True)
    assert "1 failed" in summary and "1 skipped" in summary, summary
