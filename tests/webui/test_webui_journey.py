"""The whole journey inside the real WebUI's Embed Studio tab, clicked and counted in Chromium with the same
driver and limit as the standalone test (tests/journey.py says what is counted): opening the Embed Studio tab
is one of the journey's actions here; the model is the WebUI's loaded checkpoint."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import journey  # noqa: E402
from webui_helpers import assert_embeddings_loaded, remove_run  # noqa: E402

pytestmark = [pytest.mark.webui, pytest.mark.browser]


def _open_studio(rec: journey.Recorder) -> None:
    rec.click(rec.page.locator("#tabs > .tab-nav button", has_text="Embed Studio").first, "tab Embed Studio")


def test_the_whole_journey_in_the_webui_in_ten_actions(webui, browser_page, tmp_path, request):
    """Counted as journey actions (at most 10): opening the Embed Studio tab, then every click, tab switch and
    text entry from the query to the finished run. Counted apart, as settings done before: the test booru's URL
    and pause, 12 posts, the tiny tagger's folder, 20 steps, batch size 2, one batch a step, a preview every 10
    steps, a 64x64 area, and the clicks that reach those fields. Not counted: waiting, screenshots, checks."""
    from embed_studio.formats.embedding import load_embedding

    query = "zangoose" + uuid.uuid4().hex[:6]  # the WebUI's folders outlive a test session
    request.addfinalizer(lambda: remove_run(webui.dir, query))  # else it lingers in the Train tab's file list
    server = journey.fake_booru.FakeBooru(journey.journey_posts(query)).start()
    page = browser_page
    page.set_viewport_size(journey.VIEWPORT)
    rec = journey.Recorder(page, journey.screenshot_dir(tmp_path, "webui"))
    drive = journey.Journey(rec, query)
    try:
        page.goto(webui.url)
        tagger = journey.build_journey_tagger(tmp_path / "tiny-tagger")
        page.locator("#tabs > .tab-nav button", has_text="Embed Studio").first.wait_for(timeout=120_000)
        _open_studio(rec)
        # The WebUI's tiny checkpoint takes seconds per image on a shared CPU: one batch a step, not the guide's 5.
        drive.scale_down(server.url, tagger.folder, None, grad_accum=1)
        rec.click(page.locator("#tabs > .tab-nav button", has_text="txt2img").first, "back to txt2img")
        rec.phase = "journey"
        _open_studio(rec)
        seen = drive.run()
    finally:
        server.stop()
    print(rec.report())

    folder = Path(seen["folder"])
    written = journey.captions(folder)
    assert len(written) == journey.POSTS
    assert sorted(seen["checked"]) == sorted(journey.character_tags(query))
    for text in written.values():
        tags = [t.strip() for t in text.split(",")]
        assert "solo" in tags and "looking at viewer" in tags
        assert not set(journey.character_tags(query)) & set(tags)
    assert all(webui.booru_user in (r.user_agent or "") for r in server.api_requests())
    assert f"{query}.pt is at step {journey.STEPS}" in seen["done"]
    assert load_embedding(webui.dir / "embeddings" / f"{query}.pt").step == journey.STEPS
    assert_embeddings_loaded(webui, query)
    assert rec.count("journey") <= journey.MAX_ACTIONS, rec.report()
    assert len(rec.shot_names) == 8
