"""Shared test fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def sd_webui_dir() -> Path:
    value = os.environ.get("SD_WEBUI_DIR")
    if not value or not (Path(value) / "webui.py").exists():
        pytest.skip("SD_WEBUI_DIR does not point at a WebUI v1.10.1 checkout")
    return Path(value)


@pytest.fixture
def make_image(tmp_path):
    """Write a small test image: make_image('a.png', size=(64, 48), mode='RGB', color=...)."""
    from PIL import Image

    def _make(name: str, size=(64, 64), mode="RGB", color=None, folder: Path | None = None) -> Path:
        folder = folder or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if color is None:
            color = {"RGB": (200, 30, 30), "RGBA": (200, 30, 30, 128), "L": 128, "LA": (128, 200)}.get(mode, 0)
        Image.new(mode, size, color).save(path)
        return path

    return _make


def pytest_report_header(config):
    return f"chromium: {'yes' if CHROMIUM.exists() else 'no'}; which ruff: {shutil.which('ruff')}"
