"""In the real WebUI, clicked through in Chromium in both themes: Booru fetches from a test booru server, Tagger
tags that folder with a test ONNX model, Dataset deletes a tag everywhere, saves and restores; then the WebUI's
own txt2img still generates. The Booru user name comes from Settings → Embed Studio."""

from __future__ import annotations

import pytest
import requests
from webui_helpers import fake_booru

pytestmark = [pytest.mark.webui, pytest.mark.browser]

ACTION_TIMEOUT_MS = 180_000  # a safety net against a hung job on a slow CI machine, not a timing assertion


def _fill(page, elem_id: str, value) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(str(value))


def _wait_text(page, elem_id: str, text: str) -> None:
    # gradio 3 gives a component's wrapper and its content the same id: any of them may hold the text.
    page.wait_for_function(
        "([id, text]) => [...document.querySelectorAll('#' + id)].some(e => (e.value ?? e.innerText).includes(text)"
        " || [...e.querySelectorAll('textarea')].some(t => t.value.includes(text)))",
        arg=[elem_id, text], timeout=ACTION_TIMEOUT_MS,
    )  # fmt: skip


def _subtab(page, title: str) -> None:
    page.locator("#es-tabs > .tab-nav button", has_text=title).first.click()


def _captions(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.txt"))}


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_booru_tagger_dataset_then_txt2img(webui, browser_page, tmp_path, theme):
    server = fake_booru.FakeBooru(fake_booru.make_posts(3)).start()
    try:
        _run_panels(webui, browser_page, tmp_path, theme, server)
    finally:
        server.stop()


def _run_panels(webui, page, tmp_path, theme, server):
    page.goto(f"{webui.url}/?__theme={theme}")
    page.locator("#tabs > .tab-nav button", has_text="Embed Studio").first.click(timeout=120_000)
    dark = page.evaluate("() => document.body.classList.contains('dark')")
    assert dark == (theme == "dark")

    # Booru: with the user name field left empty, the name saved in Settings goes in the User-Agent.
    _subtab(page, "Booru")
    _fill(page, "es-booru-username", "")
    assert webui.booru_user in page.locator("#es-booru-username textarea").first.get_attribute("placeholder")
    folder = tmp_path / "fetched"
    _fill(page, "es-booru-query", "zangoose")
    _fill(page, "es-booru-limit", 3)
    _fill(page, "es-booru-folder", folder)
    page.locator("#es-booru-advanced").get_by_text("Advanced: server").click()
    _fill(page, "es-booru-base-url", server.url)
    _fill(page, "es-booru-interval", 0.5)
    page.locator("#es-booru-fetch").click()
    _wait_text(page, "es-booru-summary", "3 downloaded")
    assert len(list(folder.glob("*.png"))) == 3 and len(_captions(folder)) == 3
    assert all(webui.booru_user in (r.user_agent or "") for r in server.api_requests())

    # Tagger: a local model folder; merge its tags into the booru captions.
    _subtab(page, "Tagger")
    _fill(page, "es-tagger-folder", folder)
    model = page.locator("#es-tagger-model input").first
    model.fill(str(webui.tagger.folder))
    model.press("Enter")
    page.locator("#es-tagger-on-existing").get_by_text("merge", exact=True).click()
    page.locator("#es-tagger-run").click()
    _wait_text(page, "es-tagger-status", "3 caption(s) written")
    tagged = _captions(folder)
    assert all(b"solo" in text and b"smile" in text for text in tagged.values())  # the model's and the booru's

    # Dataset: delete a tag everywhere, save, restore the backup byte for byte.
    _subtab(page, "Dataset")
    _fill(page, "es-dataset-folder", folder)
    page.locator("#es-dataset-open").click()
    _wait_text(page, "es-dataset-status", "3 images")
    _fill(page, "es-dataset-selected", "smile")
    page.locator("#es-dataset-delete").click()
    _wait_text(page, "es-dataset-status", "3 unsaved")
    page.locator("#es-dataset-save").click()
    _wait_text(page, "es-dataset-status", "Saved 3 caption(s)")
    assert not any(b"smile" in text for text in _captions(folder).values())
    page.locator("#es-dataset-restore").click()
    _wait_text(page, "es-dataset-status", "Restored 3 caption(s)")
    assert _captions(folder) == tagged

    # The WebUI's own txt2img, from its own tab, still generates.
    page.locator("#tabs > .tab-nav button", has_text="txt2img").first.click()
    page.locator("#txt2img_prompt textarea").fill("red eyes")
    for slider, value in (("txt2img_steps", 2), ("txt2img_width", 64), ("txt2img_height", 64)):
        page.locator(f"#{slider} input[type=number]").fill(str(value))
    page.locator("#txt2img_generate").click()
    page.wait_for_selector("#txt2img_gallery img", timeout=ACTION_TIMEOUT_MS)
    assert requests.get(f"{webui.url}/sdapi/v1/progress", timeout=30).ok
