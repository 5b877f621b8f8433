"""The Train panel: the loss plot, the form-to-config rules, and create/train/interrupt/resume in a real browser."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from embed_studio.backends.provider import CHECKPOINT_VAE, StandaloneProvider
from embed_studio.errors import UserInputError
from embed_studio.jobs import JobRegistry
from embed_studio.train.config import DEFAULT_EMBEDDING_LR, DEFAULT_HYPERNETWORK_LR, TrainConfig
from embed_studio.train.lossplot import moving_average, read_loss_log, render_loss_plot
from embed_studio.ui import train_form as form
from embed_studio.ui.host import UiHost

LR_ORANGE = (217, 119, 6)  # the learning-rate line's colour in lossplot


def _write_loss_csv(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "epoch", "loss", "lr", "images_per_s"])
        writer.writerows(rows)
    return path


def _count_colour(image, rgb, tolerance=40) -> int:
    import numpy as np

    pixels = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=-1) < tolerance).sum())


# -- the loss plot ---------------------------------------------------------------------------
def test_loss_plot_from_csv(tmp_path):
    rows = [(s, s // 5, 0.5 / s, 0.005 if s <= 20 else 0.001, 1.5) for s in range(1, 41)]
    rows.insert(3, ("oops", "", "", "", ""))  # a damaged row is skipped, not fatal
    rows.append((41, 8, "nan", 0.001, 1.0))  # so is a diverged step
    path = _write_loss_csv(tmp_path / "loss.csv", rows)

    series = read_loss_log(path)
    assert series.steps == list(range(1, 41))
    assert series.rates[0] == 0.005 and series.rates[-1] == 0.001
    image = render_loss_plot(path, title="mychar")
    assert image is not None and image.mode == "RGB" and image.width > 300 and image.height > 150
    assert _count_colour(image, LR_ORANGE) > 50  # the learning rate is drawn on its own axis

    no_lr = _write_loss_csv(tmp_path / "no-lr.csv", [(s, 0, 0.1, "", 1.0) for s in range(1, 5)])
    assert _count_colour(render_loss_plot(no_lr), LR_ORANGE) == 0


def test_loss_plot_has_nothing_to_show_without_rows(tmp_path):
    assert render_loss_plot(tmp_path / "missing.csv") is None
    assert render_loss_plot(_write_loss_csv(tmp_path / "empty.csv", [])) is None


def test_moving_average_is_trailing():
    assert moving_average([4.0, 2.0, 6.0, 0.0], 2) == [4.0, 3.0, 4.0, 3.0]
    assert moving_average([1.0, 2.0, 3.0], 1) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        moving_average([1.0], 0)


# -- form rules ------------------------------------------------------------------------------
@pytest.fixture
def provider(tmp_path) -> StandaloneProvider:
    provider = StandaloneProvider(tmp_path / "out")
    provider.embeddings_dir.mkdir(parents=True)
    return provider


def _form_values(**overrides) -> dict:
    values = {name: form.default(name) for name in form.form_fields()}
    values.update(overrides)
    return values


@pytest.fixture
def model_dir(tmp_path) -> Path:
    (tmp_path / "model").mkdir()  # the form only checks that the model exists; loading it is the job's
    return tmp_path / "model"


def test_build_config_uses_the_form_and_host_defaults(tmp_path, provider, train_dataset, model_dir):
    (provider.embeddings_dir / "sub").mkdir()
    (provider.embeddings_dir / "sub" / "mychar.pt").write_bytes(b"x")
    assert form.trainable_files("embedding", provider) == ["sub/mychar.pt"]
    values = _form_values(max_steps=7.0, lr="", batch_size="2")  # gr.Number gives floats; text boxes strings
    config, vae = form.build_config(
        provider, kind="embedding", model_path=str(model_dir), dataset=str(train_dataset), target="sub/mychar",
        vae=None, values=values,
    )  # fmt: skip
    assert isinstance(config, TrainConfig)
    assert config.target_path == provider.embeddings_dir / "sub" / "mychar.pt"
    assert (config.max_steps, config.batch_size, config.name) == (7, 2, "mychar")
    assert config.lr == DEFAULT_EMBEDDING_LR  # an emptied box falls back to the guide's default
    assert Path(config.log_dir) == provider.log_dir / "mychar"
    assert vae == config.vae


@pytest.mark.parametrize(
    ("overrides", "target", "expected"),
    [
        ({"lr": "0.005:abc"}, "mychar.pt", "not a whole step number"),
        ({"batch_size": 1.5}, "mychar.pt", "Batch size must be a whole number"),
        ({"max_steps": None}, "mychar.pt", "is empty"),
        ({}, "nothere", "does not exist. Create it"),
        ({}, "", "Pick the file to train"),
        ({"template": "nope.txt"}, "mychar.pt", "Prompt template 'nope.txt' not found"),
    ],
)
def test_build_config_refuses_bad_input_with_a_fix(provider, train_dataset, model_dir, overrides, target, expected):
    (provider.embeddings_dir / "mychar.pt").write_bytes(b"x")
    with pytest.raises(UserInputError, match=expected):
        form.build_config(
            provider, kind="embedding", model_path=str(model_dir), dataset=str(train_dataset), target=target,
            vae=None, values=_form_values(**overrides), labels={"batch_size": "Batch size"},
        )  # fmt: skip


@pytest.mark.parametrize("target", ["../mychar", "../mychar.pt", "{outside}", "sub/../../mychar"])
def test_build_config_refuses_a_file_outside_the_folder(tmp_path, provider, train_dataset, model_dir, target):
    # The form names the file to train like the API does: the same resolver keeps both in the kind's folder.
    outside = provider.embeddings_dir.parent / "mychar.pt"
    outside.write_bytes(b"x")
    with pytest.raises(UserInputError, match="may not contain '..'|is outside"):
        form.build_config(
            provider, kind="embedding", model_path=str(model_dir), dataset=str(train_dataset),
            target=target.format(outside=outside), vae=None, values=_form_values(),
        )  # fmt: skip


@pytest.mark.parametrize("log_dir", ["../elsewhere", "{outside}", "run/../../x"])
def test_build_config_keeps_the_log_folder_inside_the_runs_folder(
    tmp_path, provider, train_dataset, model_dir, log_dir
):
    # The form's log folder gets the API's rule (one resolver): a run writes its copies and config there.
    (provider.embeddings_dir / "mychar.pt").write_bytes(b"x")
    build = dict(provider=provider, kind="embedding", model_path=str(model_dir), dataset=str(train_dataset),
                 target="mychar", vae=None)  # fmt: skip
    with pytest.raises(UserInputError, match="may not contain '..'|is outside"):
        form.build_config(**build, values=_form_values(log_dir=log_dir.format(outside=tmp_path / "elsewhere")))
    config, _ = form.build_config(**build, values=_form_values(log_dir="second-try"))
    assert Path(config.log_dir) == provider.log_dir / "second-try"


def test_build_config_refuses_a_folder_without_images(tmp_path, provider, model_dir):
    from embed_studio.errors import DatasetError

    (provider.embeddings_dir / "mychar.pt").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    for folder, expected in ((tmp_path / "empty", "has no images"), (tmp_path / "nowhere", "does not exist")):
        with pytest.raises(DatasetError, match=expected):
            form.build_config(
                provider, kind="embedding", model_path=str(model_dir), dataset=str(folder), target="mychar.pt",
                vae=None, values=_form_values(),
            )  # fmt: skip


def test_kind_switch_swaps_only_an_untouched_default_rate():
    assert form.swap_default_lr("hypernetwork", DEFAULT_EMBEDDING_LR) == DEFAULT_HYPERNETWORK_LR
    assert form.swap_default_lr("embedding", DEFAULT_HYPERNETWORK_LR) == DEFAULT_EMBEDDING_LR
    assert form.swap_default_lr("hypernetwork", "0.0001") == "0.0001"


def test_every_config_field_has_a_place_on_the_form(tmp_path, provider):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    host = UiHost(name="standalone", models_dir=tmp_path, output_dir=tmp_path, backend_provider=provider)
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
    assert list(tab.fields) == form.form_fields()
    shown = set(tab.fields) | form.OWN_CONTROLS
    assert shown == {f for f in TrainConfig.__dataclass_fields__}
    for name, component in tab.fields.items():  # each starts at TrainConfig's default (the guides' values)
        if name not in ("lr", "clip_skip", "templates_dir"):
            assert component.value == form.default(name), name


def test_without_a_model_host_the_tab_says_so(tmp_path):
    import gradio as gr

    from embed_studio.ui.train_tab import NO_PROVIDER, TrainTab

    host = UiHost(name="standalone", models_dir=tmp_path, output_dir=tmp_path)
    with gr.Blocks() as demo:
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({TrainTab.elem_id: tab})
    texts = [getattr(b, "value", None) for b in demo.blocks.values()]
    assert NO_PROVIDER in texts and not demo.dependencies


class LoadedModelProvider(StandaloneProvider):
    """A host that has its model loaded already, as the WebUI does: the form shows it instead of asking."""

    needs_model_path = False

    def __init__(self, output_dir: Path, model: Path):
        super().__init__(output_dir, device="cpu")
        self.model = str(model)

    def model_title(self) -> str:
        return Path(self.model).name

    def describe(self) -> str:
        return f"Model: {self.model_title()} (loaded by the host)"

    def session(self, model: str = "", vae: str = CHECKPOINT_VAE, clip_skip: int = 1):
        return super().session(self.model, vae, clip_skip)


def test_a_host_with_a_loaded_model_creates_and_trains_a_hypernetwork(tmp_path, tiny_model, train_dataset, one_thread):
    import gradio as gr

    from embed_studio.formats.hypernetwork import load_hypernetwork
    from embed_studio.ui.train_tab import TrainTab

    provider = LoadedModelProvider(tmp_path / "out", tiny_model)
    host = UiHost(name="webui", models_dir=tmp_path, output_dir=tmp_path, jobs=JobRegistry(), backend_provider=provider)
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
    assert not tab.model_path.visible and tab.model_info.visible
    assert "(loaded by the host)" in tab.model_info.value

    outputs = list(
        tab.create._create_hypernetwork(
            None, "myhn", ["768", "32"], "1, 2, 1", "relu", "Normal", False, False, False, "", False, False
        )
    )
    status, kind, target = outputs[-1]
    assert status.startswith("Created") and "Left out 768" in status
    assert kind["value"] == "hypernetwork" and target["value"] == "myhn.pt"
    assert load_hypernetwork(provider.hypernetworks_dir / "myhn.pt").sizes == [32]

    values = {name: c.value for name, c in tab.fields.items()}
    values.update(lr="0.0001", max_steps=2, grad_accum=1, batch_size=2, width=64, height=64, bucket_step=32)
    values.update(clip_skip=1)
    run = list(tab._train(None, "", str(train_dataset), "hypernetwork", "myhn.pt", CHECKPOINT_VAE, *values.values()))
    job_id, status, *_ = run[-1]
    assert status.startswith("Done: myhn.pt is at step 2"), status
    assert load_hypernetwork(provider.hypernetworks_dir / "myhn.pt").step == 2
    config = TrainConfig.load_json(provider.log_dir / "myhn" / "config.json")
    assert config.model == tiny_model.name and config.kind == "hypernetwork"

    # Train again with the same Max steps: nothing to do, and the form says how to go on.
    run = list(tab._train(job_id, "", str(train_dataset), "hypernetwork", "myhn.pt", CHECKPOINT_VAE, *values.values()))
    assert run[-1][1].startswith("Nothing to do: myhn.pt is already at step 2"), run[-1][1]
    assert "Raise Max steps" in run[-1][1]


# -- in a real browser -------------------------------------------------------------------------
def _build(host):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    with gr.Blocks(analytics_enabled=False) as demo:
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({TrainTab.elem_id: tab})
    return demo


@pytest.fixture
def studio(tmp_path, serve_blocks, train_panel, tiny_model, train_dataset, one_thread):
    """The Train panel on a standalone host; returns (panel driver, host, provider, started jobs)."""
    started = []
    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    host = UiHost(
        name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "out", jobs=JobRegistry(),
        on_job_started=started.append, backend_provider=provider,
    )  # fmt: skip
    panel = train_panel
    panel.page.goto(serve_blocks(_build(host)))
    panel.fill("es-train-model", tiny_model)
    panel.fill("es-train-dataset", train_dataset)
    return panel, host, provider, started


@pytest.mark.browser
def test_create_errors_and_a_bad_schedule_start_nothing(studio):
    panel, host, provider, started = studio
    page = panel.page
    # The guide's "more tokens than vectors kills the embedding": refused with the library's fix.
    panel.fill("es-train-emb-name", "mychar")
    panel.fill("es-train-emb-init", "black hair red eyes smile dress")
    panel.fill("es-train-emb-vectors", 1)
    page.locator("#es-train-emb-create").click()
    text = panel.wait_text("es-train-emb-status", "Cannot create")
    assert "needs" in text and "tokens" in text and "1 vector" in text
    assert not (provider.embeddings_dir / "mychar.pt").exists()

    # A name that is a tag in the captions is created, with the guide's warning.
    panel.fill("es-train-emb-name", "smile")
    panel.fill("es-train-emb-init", "black hair")
    panel.fill("es-train-emb-vectors", 2)
    page.locator("#es-train-emb-create").click()
    text = panel.wait_text("es-train-emb-status", "Created")
    assert "already a tag in 2 caption(s)" in text
    assert (provider.embeddings_dir / "smile.pt").is_file()

    # A hypernetwork for this model: the WebUI's default widths do not exist in the tiny model, its own are used.
    panel.open_subtab("Create hypernetwork")
    panel.fill("es-train-hn-name", "myhn")
    page.locator("#es-train-hn-create").click()
    text = panel.wait_text("es-train-hn-status", "Created")
    assert "used its widths" in text
    assert (provider.hypernetworks_dir / "myhn.pt").is_file()

    panel.open_subtab("Train")
    # Creating switched the Train form to the new file, its kind and the kind's default rate.
    assert page.locator("#es-train-target input").first.input_value() == "myhn.pt"
    page.wait_for_function(
        "(lr) => document.querySelector('#es-train-lr textarea, #es-train-lr input').value === lr",
        arg=DEFAULT_HYPERNETWORK_LR,
    )
    panel.wait_text("es-train-target-info", "new (step 0)")
    panel.fill("es-train-lr", "0.005:abc")
    page.locator("#es-train-start").click()
    text = panel.wait_text("es-train-status", "Cannot start")
    assert "'abc' is not a whole step number" in text
    assert started == []


@pytest.mark.browser
def test_train_with_live_previews_and_loss_plot_then_interrupt_and_resume(studio, train_dataset):
    from embed_studio.formats.embedding import load_embedding

    panel, host, provider, started = studio
    page = panel.page
    panel.fill("es-train-emb-name", "mychar")
    panel.fill("es-train-emb-init", "black hair")
    panel.fill("es-train-emb-vectors", 2)
    page.locator("#es-train-emb-create").click()
    panel.wait_text("es-train-emb-status", "Created")

    panel.open_subtab("Train")
    assert page.locator("#es-train-target input").first.input_value() == "mychar.pt"
    panel.start_small_run(max_steps=4, preview_every=2)

    text = panel.wait_text("es-train-status", "Done:")
    assert "mychar.pt is at step 4 (4 this run)" in text
    panel.wait_text("es-train-target-info", "at step 4")
    page.wait_for_function("() => document.querySelectorAll('#es-train-gallery img').length >= 2")
    page.wait_for_selector("#es-train-loss img[src^='data:image']")
    target = provider.embeddings_dir / "mychar.pt"
    assert load_embedding(target).step == 4
    log_dir = provider.log_dir / "mychar"
    assert sorted(p.name for p in (log_dir / "images").iterdir()) == ["mychar-2.png", "mychar-4.png"]
    assert [int(r["step"]) for r in csv.DictReader((log_dir / "loss.csv").open())] == [1, 2, 3, 4]
    assert len(started) == 1 and started[0].kind == "train"

    # A long run, followed again from a fresh page (a reconnecting browser), then interrupted: the state is saved.
    panel.fill("es-train-max-steps", 100000)
    panel.fill("es-train-preview-every", 0)
    page.locator("#es-train-start").click()
    page.wait_for_function(
        "() => /step [1-9]\\d*\\/\\d+ · loss/.test(document.querySelector('#es-train-status').innerText)"
    )
    assert (
        "resuming mychar.pt at step 4 with its optimizer state" in page.locator("#es-train-status").first.inner_text()
    )
    page.reload()
    panel.wait_text("es-train-status", "A training run is going")
    panel.open_subtab("Train")
    page.locator("#es-train-attach").click()
    # The reloaded page's own line ("A training run is going ... loss ...") is not the attached job's progress.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#es-train-status')].some(e => e.innerText.includes('loss')"
        " && !e.innerText.includes('A training run is going'))"
    )
    page.locator("#es-train-interrupt").click()
    text = panel.wait_text("es-train-status", "Interrupted")
    assert "press Train with the same file to resume" in text
    assert started[-1].wait(30)
    interrupted_at = load_embedding(target).step
    assert interrupted_at > 4
    assert not host.jobs.active("train")

    # After a reload the form is back at its defaults; Resume puts the run's own settings back and goes on.
    page.reload()
    panel.fill("es-train-model", "")  # the saved run knows its model too
    panel.open_subtab("Train")
    page.locator("#es-train-target input").first.fill("mychar.pt")
    page.locator("#es-train-target input").first.press("Enter")
    page.locator("#es-train-resume").click()
    text = panel.wait_text("es-train-status", f"resuming mychar.pt at step {interrupted_at}")
    assert page.locator("#es-train-batch-size input").first.input_value() == "2"
    assert page.locator("#es-train-max-steps input").first.input_value() == "100000"
    assert page.locator("#es-train-dataset textarea").first.input_value() == str(train_dataset)
    page.wait_for_function(  # a step of this run is done, so the interrupt saves a later step
        "() => [...document.querySelectorAll('#es-train-status')].some(e => /step [1-9]\\d*\\/\\d+ · loss/.test(e.innerText))"
    )
    page.locator("#es-train-interrupt").click()
    panel.wait_text("es-train-status", "Interrupted")
    assert started[-1].wait(30) and len(started) == 3
    assert load_embedding(target).step > interrupted_at


def test_resume_without_saved_settings_says_what_to_do(tmp_path, provider):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    (provider.embeddings_dir / "fresh.pt").write_bytes(b"x")
    host = UiHost(name="standalone", models_dir=tmp_path, output_dir=tmp_path, backend_provider=provider)
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
    ok, line, *_ = tab._load_saved_run("embedding", "fresh.pt")
    assert not ok and "No saved run settings for fresh.pt" in line


def test_show_running_job_after_the_run_ended_shows_how_it_ended(tmp_path, provider):
    # Interrupt (served at once) can end a run before a queued "Show running job" is served, and a reload forgets
    # this browser's run: the page then shows the last run's end, not "No training run is going".
    import gradio as gr

    from embed_studio.errors import Cancelled
    from embed_studio.jobs import Job, JobRegistry
    from embed_studio.ui.train_tab import TrainTab

    host = UiHost(
        name="standalone", models_dir=tmp_path, output_dir=tmp_path, backend_provider=provider, jobs=JobRegistry()
    )
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
    assert next(tab._attach(None))[1] == "No training run is going."

    def interrupted(ctx):
        raise Cancelled("interrupted")

    job = host.jobs.submit(Job("train", interrupted))
    assert job.wait(30)
    host.jobs.submit(Job("fetch", lambda ctx: None)).wait(30)  # another kind's later job is not a training run
    shown = list(tab._attach(None))
    assert shown[-1][0] == job.id and "Interrupted" in shown[-1][1]
