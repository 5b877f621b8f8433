"""Fewer clicks between the panels: a fetch hands its folder to the tagger, Create opens Train, prompts are shown."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

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


def test_a_run_reports_its_prompts(tmp_path, tiny_model, train_dataset, one_thread):
    from embed_studio.backends.provider import StandaloneProvider
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
    seen: list[dict] = []
    job = make_train_job(config, provider, log=lambda m: None)
    job.add_listener(lambda status: seen.append(dict(status.stats)))
    job.run()
    assert job.status().state == "done", job.status().error
    prompts = [s["prompt"] for s in seen if s.get("prompt")]
    assert prompts and all(p.endswith("mychar") for p in prompts)  # the template is "[filewords], [name]"
    previews = [s for s in seen if s.get("preview_prompt")]
    assert previews and previews[-1]["preview_step"] == 2 and previews[-1]["preview_prompt"] in prompts
    assert Path(config.log_path, "images").is_dir()
