"""The whole journey in the standalone app, clicked and counted in Chromium (see tests/journey.py for what is
counted): fetch 12 posts from a test booru server, tag them with a tiny ONNX tagger, delete the two
character-defining tags, save, create an embedding, train 60 steps at batch size 2 with previews, interrupt,
resume, finish; at most MAX_ACTIONS clicks and text entries. Then what goes wrong on the way: a fetch that finds
nothing, a tagger without a model, a next step clicked twice, a reload during the run."""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr
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
    """Counted as journey actions (at most 10): every click, tab switch and text entry from typing the query to
    the finished run. Counted apart, as settings done before: the test booru's URL and pause, 12 posts, the
    tiny tagger's folder, the tiny model's path, 60 steps, batch size 2, a preview every 30 steps, a 64x64
    area, and the clicks that reach those fields. Not counted: waiting, screenshots, the checks on disk."""
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
    assert seen["folder"] == str(folder)
    written = journey.captions(folder)
    assert len(written) == journey.POSTS and len(list(folder.glob("*.png"))) == journey.POSTS
    assert sorted(seen["checked"]) == sorted(journey.character_tags())
    for text in written.values():  # the booru's tags and the tagger's, merged; the character's gone
        tags = [t.strip() for t in text.split(",")]
        assert "solo" in tags and "looking at viewer" in tags and any(s in tags for s in journey.SCENERY)
        assert not set(journey.character_tags()) & set(tags)
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


# -- what goes wrong on the way ----------------------------------------------------------------------
def _studio_tabs(tmp_path):
    import gradio as gr

    from embed_studio.backends.provider import StandaloneProvider
    from embed_studio.ui.app import available_tabs

    out = tmp_path / "out"
    host = UiHost(
        name="standalone", models_dir=tmp_path / "models", output_dir=out, jobs=JobRegistry(),
        backend_provider=StandaloneProvider(out, device="cpu"),
    )  # fmt: skip
    tabs = {}
    with gr.Blocks(analytics_enabled=False), gr.Tabs() as panels:
        for cls in available_tabs():
            tab = cls(host)
            tab.panels = panels
            with gr.Tab(cls.title, id=cls.elem_id):
                tab.create_ui()
            tabs[cls.elem_id] = tab
        for tab in tabs.values():
            tab.set_callbacks(tabs)
    return tabs, host


def _finished(host, result) -> str:
    from embed_studio.jobs import Job

    job = host.jobs.submit(Job("fetch", lambda ctx: result))
    assert job.wait(30)
    return job.id


def test_the_query_names_the_embedding():
    from embed_studio.booru.fetch import name_from_query

    assert name_from_query("zangoose -female score:>0") == "zangoose"
    assert name_from_query("zangoose_(pokemon) solo") == "zangoose_pokemon_solo"
    assert name_from_query("-female rating:s") == ""


def test_a_fetch_of_nothing_says_so_and_offers_no_next_step(tmp_path):
    from embed_studio.booru.fetch import FetchSummary

    tabs, host = _studio_tabs(tmp_path)
    booru = tabs["es-booru"]
    empty = FetchSummary(folder=str(tmp_path / "x"), finished=True, notes=["No posts matched the query."])
    button, line, name = booru._offer_next(_finished(host, empty), "nosuchtag", "")
    assert button["visible"] is False
    assert line.startswith("**Nothing fetched**") and "No posts matched the query." in line
    assert name == gr.update()  # the embedding's name is left alone

    fetched = FetchSummary(folder=str(tmp_path / "x"), downloaded=12, captions=12, finished=True)
    job_id = _finished(host, fetched)
    assert booru._offer_next(job_id, "zangoose -female", "")[::2] == (gr.update(visible=True), "zangoose")
    assert booru._offer_next(job_id, "zangoose", "mychar")[2] == gr.update()  # a typed name is kept
    folder, action, panel = booru._go_to_tagger(job_id)
    assert (folder, action, panel["selected"]) == (str(tmp_path / "x"), "merge", "es-tagger")


def test_save_and_train_goes_nowhere_while_edits_are_unsaved(tmp_path, train_dataset):
    from embed_studio.dataset.session import DatasetSession

    tabs, host = _studio_tabs(tmp_path)
    dataset = tabs["es-dataset"]
    session = DatasetSession()
    session.open(str(train_dataset))
    session.require().delete_tags("smile")
    assert dataset._go_to_train(session) == (gr.update(),) * 3
    session.require().save()
    folder, panel, subtab = dataset._go_to_train(session)
    assert (folder, panel["selected"], subtab["selected"]) == (str(train_dataset), "es-train", "create-embedding")
    assert dataset._go_to_train(DatasetSession()) == (gr.update(),) * 3


def test_fetch_nothing_a_tagger_without_model_and_next_clicked_twice(tmp_path, studio, booru, page):
    """One clear line for each, no traceback, and the captions are tagged once."""
    url, host = studio
    rec = journey.Recorder(page, tmp_path / "shots")
    drive = journey.Journey(rec)
    page.goto(url)
    tagger = journey.build_journey_tagger(tmp_path / "tiny-tagger")
    drive.scale_down(booru.url, tagger.folder, None)

    rec.type("es-booru-query", "nosuchtag", "a query that finds nothing")
    rec.click("#es-booru-fetch", "Fetch")
    line = drive.wait_text("es-booru-progress", "Nothing fetched")
    assert "No posts matched the query" in line and "Traceback" not in line
    assert not page.locator("#es-booru-next").first.is_visible()

    drive.fetch()
    folder = Path(host.output_dir) / "booru" / journey.QUERY
    fetched = journey.captions(folder)
    drive.panel("Tagger")
    (tmp_path / "no-model-here").mkdir()
    rec.type("es-tagger-model", tmp_path / "no-model-here", "a model folder without a model")
    rec.press("#es-tagger-model input", "Enter", "Enter")
    drive.panel("Booru")
    rec.click("#es-booru-next", "Tag these images →")
    line = drive.wait_text("es-tagger-status", "failed")
    assert "holds no model.onnx" in line and "Traceback" not in line and len(line.strip().splitlines()) == 1
    assert journey.captions(folder) == fetched  # nothing written, nothing lost
    assert not page.locator("#es-tagger-next").first.is_visible()

    rec.type("es-tagger-model", tagger.folder, "the tiny tagger again")
    rec.press("#es-tagger-model input", "Enter", "Enter")
    drive.panel("Booru")
    page.locator("#es-booru-next").first.wait_for(state="visible")
    page.locator("#es-booru-next").first.dblclick()
    drive.wait_visible("es-tagger-next")
    page.locator("#es-tagger-next").first.dblclick()
    drive.wait_text("es-dataset-status", f"{journey.POSTS} images")
    for text in journey.captions(folder).values():
        tags = [t.strip() for t in text.split(",")]
        assert len(tags) == len(set(tags)) and "looking at viewer" in tags  # tagged, each tag once
    assert "Traceback" not in page.locator("body").inner_text()


def test_a_reload_during_the_run_and_create_clicked_twice(
    tmp_path, studio, page, tiny_model, train_dataset, one_thread
):
    """After a reload the Train panel says a run is going and holds its settings; a second Create & train
    neither replaces the file nor starts a second run; Interrupt still stops the run."""
    url, host = studio
    rec = journey.Recorder(page, tmp_path / "shots")
    drive = journey.Journey(rec)
    page.goto(url)
    drive.panel("Train")
    for elem_id, value in (("es-train-model", tiny_model), ("es-train-dataset", train_dataset)):
        rec.type(elem_id, value, elem_id)
    drive.train_subtab("Train")
    for elem_id, value in (("es-train-max-steps", 100000), ("es-train-width", 64), ("es-train-height", 64)):
        rec.type(elem_id, value, elem_id)
    drive.train_subtab("Create embedding")
    rec.type("es-train-emb-name", "mychar", "name")
    rec.click("#es-train-emb-create-train", "Create & train")
    drive.wait_text("es-train-status", r"step [1-9]\d*/\d+ · loss")
    target = Path(host.backend_provider.embeddings_dir) / "mychar.pt"

    page.reload()
    drive.panel("Train")
    line = drive.wait_text("es-train-status", "A training run is going")
    assert "mychar.pt" in line
    assert page.locator("#es-train-max-steps input").first.input_value() == "100000"
    drive.train_subtab("Create embedding")
    rec.type("es-train-emb-name", "mychar", "name")
    rec.click("#es-train-emb-create-train", "Create & train again")
    line = drive.wait_text("es-train-emb-status", "Cannot create")
    assert "already exists" in line
    assert len(host.jobs.active("train")) == 1
    drive.train_subtab("Train")
    rec.click("#es-train-interrupt", "Interrupt")
    drive.wait_text("es-train-status", "Interrupting|Interrupted")
    for job in host.jobs.active("train"):
        assert job.wait(120)
    from embed_studio.formats.embedding import load_embedding

    assert load_embedding(target).step >= 1  # the run's file, not a fresh one from the second create
