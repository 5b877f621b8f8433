"""Shared test fixtures."""

from __future__ import annotations

import os
import shutil
import threading
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


# In CI every test runs: Chromium, the real WebUI and the shared fixtures are all there, so a skip for
# any other reason than these is a failure (a test that quietly skips proves nothing).
SKIPS_ALLOWED_IN_CI = ("needs a CUDA GPU",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(allowed in reason for allowed in SKIPS_ALLOWED_IN_CI):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {reason}"


def pytest_report_header(config):
    return f"chromium: {'yes' if CHROMIUM.exists() else 'no'}; which ruff: {shutil.which('ruff')}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve_blocks():
    """Launch a gr.Blocks on 127.0.0.1 (queue on, as in the WebUI) and return its URL."""
    launched = []

    def _serve(blocks) -> str:
        port = _free_port()
        blocks.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        launched.append(blocks)
        return f"http://127.0.0.1:{port}/"

    yield _serve
    for blocks in launched:
        # A browser that left a connection open (or a handler still polling a job) would make uvicorn's
        # graceful shutdown wait forever: force it, and never wait more than a few seconds.
        server = getattr(blocks, "server", None)
        if server is not None:
            server.force_exit = True
        closer = threading.Thread(target=blocks.close, daemon=True)
        closer.start()
        closer.join(10)


@pytest.fixture
def browser_page(chromium_path):
    """A Playwright page in Debian's headless Chromium (no browser download)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium_path),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def _mount_tmpfs(path: Path, options: str) -> bool:
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    )


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB filesystem, to test disk-full handling (needs mount rights; skipped without)."""
    import subprocess

    mnt = tmp_path / "small-disk"
    if not _mount_tmpfs(mnt, "size=64k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def read_only_dir(tmp_path):
    """A tmpfs folder (.path) and .make_read_only() to remount it read-only, which even root cannot write."""
    import subprocess

    mnt = tmp_path / "ro-disk"
    if not _mount_tmpfs(mnt, "size=1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")

    def make_read_only() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)

    from types import SimpleNamespace

    yield SimpleNamespace(path=mnt, make_read_only=make_read_only)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


class TrainPanel:
    """Drives the Train panel in a page (standalone or inside the WebUI): fields, sub-tabs, a small run."""

    def __init__(self, page):
        self.page = page

    def fill(self, elem_id: str, value) -> None:
        self.page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(str(value))

    def open_subtab(self, title: str) -> None:
        self.page.locator("#es-train-tabs > .tab-nav button", has_text=title).first.click()

    def wait_text(self, elem_id: str, text: str, timeout: float = 60_000) -> str:
        # gradio 3 gives a Markdown's wrapper and its content the same id: any of them may hold the text.
        try:
            self.page.wait_for_function(
                "([id, text]) => [...document.querySelectorAll('#' + id)].some(e => e.innerText.includes(text))",
                arg=[elem_id, text], timeout=timeout,
            )  # fmt: skip
        except Exception as e:  # a timeout says what the page showed instead, for the failure report
            shown = [el.inner_text() for el in self.page.locator(f"#{elem_id}").all()]
            raise AssertionError(f"#{elem_id} never showed {text!r}; it shows {shown!r}") from e
        return self.page.locator(f"#{elem_id}").last.inner_text()

    def start_small_run(self, max_steps: int, preview_every: int) -> None:
        """Batch 2 on a 64x64 area with 32-pixel buckets and 2-step previews: a run the tiny models finish fast."""
        for name, value in (("batch-size", 2), ("grad-accum", 1), ("max-steps", max_steps)):
            self.fill(f"es-train-{name}", value)
        self.fill("es-train-preview-every", preview_every)
        self.fill("es-train-width", 64)
        self.fill("es-train-height", 64)
        self.page.locator("#es-train-previews").get_by_text("Previews").first.click()
        self.fill("es-train-preview-steps", 2)
        self.page.locator("#es-train-advanced").get_by_text("Advanced").first.click()
        self.fill("es-train-bucket-step", 32)
        self.page.locator("#es-train-start").click()


@pytest.fixture
def train_panel(browser_page) -> TrainPanel:
    return TrainPanel(browser_page)
