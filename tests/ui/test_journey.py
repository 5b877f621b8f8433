"""The whole journey in the standalone app, clicked and counted in Chromium (see tests/journey.py for what is
counted): fetch 12 posts from a test booru server, tag them with a tiny ONNX tagger, delete the two
character-defining tags, save, create an embedding, train 20 steps at batch size 2 with previews, interrupt,
resume, finish; at most MAX_ACTIONS clicks and text entries. Then what goes wrong on the way: a fetch that finds
nothing, a tagger without a model, a next step clicked twice, a reload during the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import journey  # noqa: E402

from embed_studio.jobs import JobRegistry  # noqa: E402
from embed_studio.ui.host import UiHost  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture
def booru():
    server = journey.fake_booru.FakeBooru(journey.journey_posts()).start()
    yield server
    server.stop()


@pytest.fixture
def studio(tmp_path, serve_standalone):
    """The app as `embed-studio ui` serves it, on a fresh output folder; returns (url, host)."""
    from embed_studio.backends.provider import StandaloneProvider
    from embed_studio.ui.app import build_studio

    out = tmp_path / "out"
    host = UiHost(
        name="standalone", models_dir=tmp_path / "models", output_dir=out, jobs=JobRegistry(),
        backend_provider=StandaloneProvider(out, device="cpu"), prefs_path=tmp_path / "ui-settings.json",
    )  # fmt: skip
    return serve_standalone(build_studio(host)), host


@pytest.fixture
def page(browser_page):
    browser_page.set_viewport_size(journey.VIEWPORT)
    return browser_page


def test_the_whole_journey_in_ten_actions(tmp_path, studio, booru, page, tiny_model, one_thread):
    from embed_studio.formats.embedding import load_embedding

    url, host = studio
    rec = journey.Recorder(page, journey.screenshot_dir(tmp_path, "standalone"))
    drive = journey.Journey(rec)
    page.goto(url)
    tagger = journey.build_journey_tagger(tmp_path / "tiny-tagger")
    drive.scale_down(booru.url, tagger.folder, tiny_model)
    seen = drive.run()
    print(rec.report())

    folder = Path(host.output_dir) / "booru" / journey.QUERY
    written = journey.captions(folder)
    assert len(written) == journey.POSTS and len(list(folder.glob("*.png"))) == journey.POSTS
    assert sorted(seen["checked"]) == sorted(journey.CHARACTER_TAGS)
    for text in written.values():  # the booru's tags and the tagger's, merged; the character's gone
        tags = [t.strip() for t in text.split(",")]
        assert "solo" in tags and "looking at viewer" in tags and any(s in tags for s in journey.SCENERY)
        assert not set(journey.CHARACTER_TAGS) & set(tags)
    assert list((folder / ".embed-studio").rglob("*.txt")), "the captions before the edit are kept in a backup"
    target = Path(host.backend_provider.embeddings_dir) / f"{journey.QUERY}.pt"
    assert "Interrupted" in seen["interrupted"]
    assert f"{journey.QUERY}.pt is at step {journey.STEPS}" in seen["done"]
    assert load_embedding(target).step == journey.STEPS
    previews = sorted(p.name for p in (Path(host.backend_provider.log_dir) / journey.QUERY / "images").glob("*.png"))
    assert (
        f"{journey.QUERY}-{journey.STEPS}.png" in previews
        and f"{journey.QUERY}-{journey.PREVIEW_EVERY}.png" in previews
    )
    assert rec.count("journey") <= journey.MAX_ACTIONS, rec.report()
    assert len(rec.shot_names) == 8
