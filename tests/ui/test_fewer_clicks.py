"""Fewer clicks between the panels: a fetch hands its folder to the tagger, Create opens Train, prompts are shown."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from embed_studio.booru.fetch import FetchSummary
from embed_studio.jobs import Job, JobRegistry
from embed_studio.ui.host import UiHost


def _booru_tab(tmp_path):
    from embed_studio.ui.booru_tab import BooruTab

    host = UiHost(name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "out", jobs=JobRegistry())
    return BooruTab(host), host


def _finished_fetch(host, summary) -> str:
    job = host.jobs.submit(Job("fetch", lambda ctx: summary))
    assert job.wait(30)
    return job.id


def test_a_fetch_hands_its_folder_to_the_tagger_and_merges_into_its_captions(tmp_path):
    tab, host = _booru_tab(tmp_path)
    folder = str(tmp_path / "zangoose")
    with_captions = _finished_fetch(host, FetchSummary(folder=folder, downloaded=12, captions=12))
    assert tab._hand_to_tagger(with_captions, "") == (folder, "merge")
    assert tab._hand_to_tagger(with_captions, folder) == (folder, "merge")

    # No captions written: the folder goes along, the tagger's action stays as the user left it.
    images_only = _finished_fetch(host, FetchSummary(folder=folder, downloaded=12))
    carried, action = tab._hand_to_tagger(images_only, "")
    assert carried == folder and action == gr.update()

    # The tagger is set to another folder, or the fetch did not finish: nothing changes.
    assert tab._hand_to_tagger(with_captions, str(tmp_path / "other")) == (gr.update(), gr.update())
    failed = host.jobs.submit(Job("fetch", lambda ctx: 1 / 0))
    failed.wait(30)
    assert tab._hand_to_tagger(failed.id, "") == (gr.update(), gr.update())
    assert tab._hand_to_tagger(None, "") == (gr.update(), gr.update())


def test_the_fetched_folder_fills_the_later_panels_empty_folder_boxes(tmp_path):
    tab, host = _booru_tab(tmp_path)
    folder = str(tmp_path / "zangoose")
    job_id = _finished_fetch(host, FetchSummary(folder=folder, downloaded=12, captions=12))
    assert tab._hand_on(job_id, "", "", "/data/other") == (folder, "merge", folder, gr.update())
    nothing = (gr.update(), gr.update(), gr.update(), gr.update())
    assert tab._hand_on(None, "", "", "") == nothing


def test_create_opens_the_train_subtab_only_when_a_file_was_made():
    from embed_studio.ui.train_tab import TRAIN_SUBTAB, _open_train_if_created

    assert _open_train_if_created("Created /x/mychar.pt (2 vector(s) of 768). It is picked in the Train tab.") == {
        "selected": TRAIN_SUBTAB, "__type__": "update"
    }  # fmt: skip
    assert _open_train_if_created("**Cannot create:** Enter a name first.") == gr.update()


def test_status_shows_the_last_prompt_and_the_preview_prompt():
    from embed_studio.ui.train_tab import _prompts

    text = _prompts({"prompt": "zangoose_\\(pokemon\\), solo, mychar", "preview_prompt": "a photo of mychar",
                     "preview_step": 250})  # fmt: skip
    assert "Last prompt: `zangoose_\\(pokemon\\), solo, mychar`" in text
    assert "Preview at step 250: `a photo of mychar`" in text
    assert _prompts({}) == ""


def test_a_run_reports_its_prompts_and_logs_its_loss_as_it_goes(
    tmp_path, tiny_model, train_dataset, one_thread, monkeypatch
):
    from embed_studio.backends.provider import StandaloneProvider
    from embed_studio.train import loop
    from embed_studio.train.config import TrainConfig
    from embed_studio.train.create import create_embedding
    from embed_studio.train.job import make_train_job

    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    target = provider.embeddings_dir / "mychar.pt"
    target.parent.mkdir(parents=True)
    with provider.session(str(tiny_model)) as backend:
        from embed_studio.formats.embedding import save_embedding

        save_embedding(create_embedding(backend, "mychar", "black hair", 2), target)
    config = TrainConfig(
        kind="embedding", model=str(tiny_model), dataset=str(train_dataset), target=str(target), max_steps=2,
        grad_accum=1, width=64, height=64, bucket_step=32, preview_every=2, preview_steps=1, save_every=0,
        shuffle_tags=False, log_dir=str(tmp_path / "log"), preview_with_embedding=False,
    )  # fmt: skip
    monkeypatch.setattr(loop, "LOSS_LOG_EVERY", 1)
    seen: list[dict] = []
    rows_at_step_1: list[int] = []
    loss_csv = Path(config.log_path) / "loss.csv"

    def listen(status) -> None:
        seen.append(dict(status.stats))
        if status.done == 1 and status.stats.get("loss") is not None and not rows_at_step_1:
            rows_at_step_1.append(len(loss_csv.read_text(encoding="utf-8").splitlines()) - 1)

    job = make_train_job(config, provider, log=lambda m: None)
    job.add_listener(listen)
    job.run()
    assert rows_at_step_1 == [1]  # written during the run, not only at the preview and the end
    assert job.status().state == "done", job.status().error
    prompts = [s["prompt"] for s in seen if s.get("prompt")]
    assert prompts and all(p.endswith("mychar") for p in prompts)  # the template is "[filewords], [name]"
    previews = [s for s in seen if s.get("preview_prompt")]
    assert previews and previews[-1]["preview_step"] == 2 and previews[-1]["preview_prompt"] in prompts
    assert Path(config.log_path, "images").is_dir()


def _loss_csv(path: Path, steps: int) -> Path:
    lines = ["step,epoch,loss,lr,images_per_s"] + [f"{s},0,{1 / s:.4f},0.005,1.0" for s in range(1, steps + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_loss_plot_is_transparent_with_grey_text_for_either_theme(tmp_path):
    from embed_studio.train.lossplot import NEUTRAL, render_loss_plot

    path = _loss_csv(tmp_path / "loss.csv", 30)
    plain = render_loss_plot(path)
    assert plain.mode == "RGB" and plain.getpixel((0, 0)) == (255, 255, 255)  # files and the API keep white
    themed = render_loss_plot(path, transparent=True)
    assert themed.mode == "RGBA" and themed.getpixel((0, 0))[3] == 0
    import numpy as np

    pixels = np.asarray(themed).astype(int)
    grey = tuple(int(NEUTRAL[i : i + 2], 16) for i in (1, 3, 5))
    opaque = pixels[..., 3] > 200
    near_grey = (np.abs(pixels[..., :3] - np.array(grey)).sum(axis=-1) < 30) & opaque
    near_black = (pixels[..., :3].sum(axis=-1) < 60) & opaque
    assert near_grey.sum() > 200  # the text and axes
    assert near_black.sum() == 0  # nothing black that would vanish on the dark theme


def test_the_tab_redraws_the_plot_as_the_log_grows_but_not_at_every_poll(tmp_path, monkeypatch):
    from embed_studio.jobs import JobStatus
    from embed_studio.train.lossplot import loss_log_path
    from embed_studio.ui import train_tab
    from embed_studio.ui.train_tab import TrainTab

    log_dir = tmp_path / "log"
    log_dir.mkdir()
    path = loss_log_path(log_dir)
    clock = [100.0]
    monkeypatch.setattr(train_tab.time, "monotonic", lambda: clock[0])

    def status(state: str) -> JobStatus:
        return JobStatus(
            id="train-1", kind="train", state=state, done=1, total=10, text="", started=0.0, finished=None,
            rate=None, eta_seconds=None, error=None, stats={"log_dir": str(log_dir), "target": "mychar.pt"},
        )  # fmt: skip

    sent = {"images": None, "plot": train_tab._UNSET, "plotted_at": None}
    _loss_csv(path, 10)
    assert TrainTab._plot(status("running"), sent).mode == "RGBA"
    _loss_csv(path, 20)
    clock[0] += 1.0
    assert TrainTab._plot(status("running"), sent) == gr.update()  # too soon after the last drawing
    clock[0] += train_tab.PLOT_SECONDS
    assert TrainTab._plot(status("running"), sent).mode == "RGBA"
    _loss_csv(path, 30)
    assert TrainTab._plot(status("done"), sent).mode == "RGBA"  # the end is always drawn


@pytest.fixture
def fake_booru():
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "booru" / "fake_booru.py"
    spec = importlib.util.spec_from_file_location("es_tests_fake_booru", path)
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
    server = module.FakeBooru(module.make_posts(3)).start()
    yield server
    server.stop()


@pytest.mark.browser
def test_after_a_fetch_the_tagger_and_dataset_panels_hold_its_folder(tmp_path, fake_booru, serve_blocks, browser_page):
    from embed_studio.ui.app import build_studio

    host = UiHost(name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "out", jobs=JobRegistry())
    page = browser_page
    page.goto(serve_blocks(build_studio(host)))
    folder = tmp_path / "zangoose"
    for elem_id, value in (("es-booru-query", "zangoose"), ("es-booru-folder", str(folder))):
        page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(value)
    page.locator("#es-booru-advanced").get_by_text("Advanced: server").click()
    for elem_id, value in (("es-booru-base-url", fake_booru.url), ("es-booru-interval", "0")):
        page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(value)
    page.locator("#es-booru-fetch").click()
    page.wait_for_function(
        "(v) => document.querySelector('#es-tagger-folder textarea')?.value === v", arg=str(folder), timeout=60_000
    )
    assert page.locator("#es-tagger-on-existing input[value='merge']").is_checked()
    assert page.locator("#es-dataset-folder textarea").input_value() == str(folder)
