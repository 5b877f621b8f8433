"""The standalone Train panel's model picker: a models folder set once (remembered), its models listed, a path box."""

from __future__ import annotations

import json

import pytest

from embed_studio.backends.provider import StandaloneProvider
from embed_studio.jobs import JobRegistry
from embed_studio.ui import train_form as form
from embed_studio.ui.host import UiHost
from embed_studio.ui.prefs import Prefs


def _models_folder(tmp_path):
    models = tmp_path / "models"
    (models / "sd15-diffusers").mkdir(parents=True)
    (models / "sd15-diffusers" / "model_index.json").write_text("{}", encoding="utf-8")
    (models / "Stable-diffusion").mkdir()
    (models / "Stable-diffusion" / "anything.safetensors").write_bytes(b"x")
    (models / "base.ckpt").write_bytes(b"x")
    (models / "notes.txt").write_text("not a model", encoding="utf-8")
    (models / "empty-folder").mkdir()
    return models


def test_find_models_lists_checkpoints_and_diffusers_folders(tmp_path):
    models = _models_folder(tmp_path)
    assert form.find_models(str(models)) == [
        str(models / "base.ckpt"),
        str(models / "sd15-diffusers"),
        str(models / "Stable-diffusion" / "anything.safetensors"),
    ]
    assert form.find_models(str(tmp_path / "missing")) == []
    assert form.find_models("  ") == []


def test_prefs_survive_a_damaged_file(tmp_path):
    path = tmp_path / "home" / "ui-settings.json"
    prefs = Prefs(path)
    assert prefs.get("models_folder", "") == ""
    prefs.set("models_folder", "/data/models")
    assert Prefs(path).get("models_folder") == "/data/models"
    assert json.loads(path.read_text(encoding="utf-8")) == {"models_folder": "/data/models"}
    path.write_text("{not json", encoding="utf-8")
    assert Prefs(path).get("models_folder", "") == ""
    Prefs(None).set("models_folder", "x")  # a host without a prefs file remembers nothing, quietly


@pytest.mark.browser
def test_model_is_picked_from_the_remembered_folder(tmp_path, serve_blocks, browser_page):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    models = _models_folder(tmp_path)
    host = UiHost(
        name="standalone", models_dir=tmp_path / "tagger-models", output_dir=tmp_path / "out", jobs=JobRegistry(),
        backend_provider=StandaloneProvider(tmp_path / "out", device="cpu"), prefs_path=tmp_path / "ui-settings.json",
    )  # fmt: skip
    with gr.Blocks(analytics_enabled=False) as demo:
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({TrainTab.elem_id: tab})
    page = browser_page
    page.goto(serve_blocks(demo))
    folder_box = page.locator("#es-train-models-folder textarea").first
    folder_box.fill(str(models))
    folder_box.press("Enter")
    page.wait_for_selector(f"#es-train-model-pick >> text=3 in {models}")  # the list has arrived
    page.locator("#es-train-model-pick input").first.click()
    page.locator("ul.options li", has_text="sd15-diffusers").first.click()
    page.wait_for_function(
        "(v) => document.querySelector('#es-train-model textarea')?.value === v", arg=str(models / "sd15-diffusers")
    )
    # Set once: a new page (or a restarted app) lists the same folder's models.
    page.reload()
    page.wait_for_function(
        "(v) => document.querySelector('#es-train-models-folder textarea')?.value === v", arg=str(models)
    )
    page.wait_for_selector(f"#es-train-model-pick >> text=3 in {models}")
    page.locator("#es-train-model-pick input").first.click()
    page.locator("ul.options li", has_text="anything.safetensors").first.click()
    page.wait_for_function(
        "(v) => document.querySelector('#es-train-model textarea')?.value === v",
        arg=str(models / "Stable-diffusion" / "anything.safetensors"),
    )
    # A folder that is not there says so instead of listing nothing silently.
    folder_box = page.locator("#es-train-models-folder textarea").first
    folder_box.fill(str(tmp_path / "nowhere"))
    folder_box.press("Enter")
    page.wait_for_selector("#es-train-model-pick >> text=no folder")
