"""The studio page in a real browser: every installed panel shows, in workflow order."""

from __future__ import annotations

import pytest

from embed_studio.ui.app import build_studio
from embed_studio.ui.host import UiHost

pytestmark = pytest.mark.browser


def test_studio_shows_every_available_panel(tmp_path, serve_blocks, browser_page):
    host = UiHost(name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "out")
    url = serve_blocks(build_studio(host))
    browser_page.goto(url)
    browser_page.wait_for_selector("#es-tabs")
    buttons = browser_page.locator("#es-tabs > .tab-nav button").all_inner_texts()
    # The guides' workflow, in its order: fetch, tag, prune, train (the standalone app has every panel).
    assert [b.strip() for b in buttons] == ["Booru", "Tagger", "Dataset", "Train"]


def test_standalone_page_loads_extension_css(tmp_path, serve_blocks, browser_page):
    host = UiHost(name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "out")
    url = serve_blocks(build_studio(host))
    browser_page.goto(url)
    browser_page.wait_for_selector("#es-root")
    css = browser_page.evaluate(
        "() => Array.from(document.querySelectorAll('style')).map(s => s.textContent).join('\\n')"
    )
    assert ".es-status-line" in css


def test_standalone_page_runs_extension_scripts(tmp_path, serve_blocks, browser_page):
    # The WebUI includes javascript/*.js itself; standalone, the app must, or the dataset tab's
    # "unsaved changes" guard would silently be missing.
    host = UiHost(name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "out")
    url = serve_blocks(build_studio(host))
    browser_page.goto(url)
    browser_page.wait_for_function("() => typeof window.embedStudioDatasetDirty === 'function'")


def test_webui_host_leaves_assets_to_the_webui(tmp_path):
    host = UiHost(name="webui", models_dir=tmp_path / "models", output_dir=tmp_path / "out")
    studio = build_studio(host)
    assert not studio.css  # the WebUI serves style.css and javascript/ itself; twice would double handlers
