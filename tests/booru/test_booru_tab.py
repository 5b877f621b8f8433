"""The Booru tab in a real browser against the fake e621: fill the form, fetch, see the summary."""

from __future__ import annotations

import pytest

from embed_studio.ui.host import UiHost

pytestmark = pytest.mark.browser


def _build(host):
    import gradio as gr

    from embed_studio.ui.booru_tab import BooruTab

    with gr.Blocks(analytics_enabled=False) as demo:
        tab = BooruTab(host)
        tab.create_ui()
        tab.set_callbacks({BooruTab.elem_id: tab})
    return demo


def _fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(value)


def test_fetch_from_the_tab(tmp_path, booru_server, fb, serve_blocks, browser_page):
    posts = fb.make_posts(5)
    posts[0].deleted = True
    server = booru_server(posts)
    host = UiHost(name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "outputs")
    page = browser_page
    page.goto(serve_blocks(_build(host)))
    folder = tmp_path / "dl"
    _fill(page, "es-booru-query", "zangoose")
    _fill(page, "es-booru-limit", "3")
    _fill(page, "es-booru-folder", str(folder))
    _fill(page, "es-booru-username", "browser_user")
    page.locator("#es-booru-advanced").get_by_text("Advanced: server").click()
    _fill(page, "es-booru-base-url", server.url)
    _fill(page, "es-booru-interval", "0")
    page.locator("#es-booru-fetch").click()
    summary = page.locator("#es-booru-summary textarea")
    page.wait_for_function(
        "() => (document.querySelector('#es-booru-summary textarea') || {}).value?.startsWith('Done')"
    )
    text = summary.input_value()
    assert "3 downloaded" in text and "1 deleted" in text
    assert sorted(p.suffix for p in folder.iterdir()) == [".png"] * 3 + [".txt"] * 3
    assert "browser_user" in server.api_requests()[0].user_agent
    page.wait_for_selector("#es-booru-gallery img")
    assert page.locator("#es-booru-gallery img").count() >= 1
    assert "done" in page.locator("#es-booru-progress").first.inner_text()


def test_bad_input_is_explained_in_the_tab(tmp_path, serve_blocks, browser_page):
    host = UiHost(name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "outputs")
    page = browser_page
    page.goto(serve_blocks(_build(host)))
    page.locator("#es-booru-fetch").click()
    page.wait_for_function("() => document.querySelector('#es-booru-progress').innerText.includes('Cannot start')")
    assert "search query" in page.locator("#es-booru-progress").first.inner_text()
