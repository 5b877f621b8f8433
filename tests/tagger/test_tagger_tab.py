"""The Tagger panel in a real browser: dry run, real run and the one-image check with a local tiny model."""

from __future__ import annotations

import pytest

from embed_studio.dataset.folder import read_caption
from embed_studio.ui.app import build_studio
from embed_studio.ui.host import UiHost

pytestmark = pytest.mark.browser


def test_dry_run_then_tag_then_one_image(dataset, tiny_tagger, tmp_path, serve_blocks, browser_page):
    host = UiHost(name="standalone", models_dir=tmp_path / "models-cache", output_dir=tmp_path / "out")
    page = browser_page
    page.goto(serve_blocks(build_studio(host)))
    page.locator("#es-tabs > .tab-nav button", has_text="Tagger").click()
    page.locator("#es-tagger-folder textarea").fill(str(dataset))
    model = page.locator("#es-tagger-model input")
    model.fill(str(tiny_tagger.folder))
    model.press("Enter")

    page.locator("#es-tagger-dry-run").click()
    page.wait_for_selector("#es-tagger-results .es-tagger-tag")
    results = page.locator("#es-tagger-results").first.inner_text()
    assert "blue.webp" in results and "hatsune miku" in results
    assert "red.png" in results and "red theme" in results
    page.wait_for_function("() => document.querySelector('#es-tagger-status').innerText.includes('Dry run')")
    assert "CPUExecutionProvider" in page.locator("#es-tagger-provider").first.inner_text()
    assert list(dataset.glob("*.txt")) == []  # a dry run writes nothing

    page.locator("#es-tagger-run").click()
    page.wait_for_function(
        "() => document.querySelector('#es-tagger-status').innerText.includes('3 caption(s) written')"
    )
    assert "hatsune miku" in read_caption(dataset / "blue.webp")
    counts = page.locator("#es-tagger-results").first.inner_text()
    assert counts.startswith("Most common tags:") and "solo 3" in counts and "hatsune miku 1" in counts

    page.get_by_text("Check one image (writes nothing)").click()
    page.locator("#es-tagger-image input[type=file]").set_input_files(str(dataset / "red.png"))
    page.locator("#es-tagger-image-run").click()
    page.wait_for_function(
        "() => (document.querySelector('#es-tagger-image-tags textarea') || {}).value?.includes('red theme')"
    )
