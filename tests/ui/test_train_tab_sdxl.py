"""The Train tab's Create panel on an SDXL model (standalone): the new file is the WebUI's SDXL .safetensors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import safetensors.torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from tiny_sdxl import build_tiny_sdxl  # noqa: E402

from embed_studio.backends.provider import StandaloneProvider  # noqa: E402
from embed_studio.jobs import JobRegistry  # noqa: E402
from embed_studio.ui.host import UiHost  # noqa: E402


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("ui-tiny-sdxl"))


def test_create_panel_writes_an_sdxl_safetensors_and_picks_it(tmp_path, tiny_sdxl, train_dataset, one_thread):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    host = UiHost(name="standalone", models_dir=tmp_path, output_dir=tmp_path, jobs=JobRegistry(),
                  backend_provider=provider)  # fmt: skip
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
    outputs = list(tab.create._create_embedding(str(tiny_sdxl), str(train_dataset), 1, "xlchar", "red eyes", 2, False))
    status, kind, target = outputs[-1]
    assert status.startswith("Created") and "xlchar.safetensors" in status, status
    assert kind["value"] == "embedding" and target["value"] == "xlchar.safetensors"
    raw = safetensors.torch.load_file(str(provider.embeddings_dir / "xlchar.safetensors"))
    assert raw["clip_l"].shape == (2, 768) and raw["clip_g"].shape == (2, 1280)
    assert not (provider.embeddings_dir / "xlchar.pt").exists()
    # Never silently overwritten: the same name again is refused.
    again = list(tab.create._create_embedding(str(tiny_sdxl), "", 1, "xlchar", "red", 1, False))
    assert "already exists" in again[-1][0]


def test_form_defaults_to_a_1024_area_on_an_sdxl_host(tmp_path, tiny_sdxl, tiny_model):
    """A host with an SDXL model loaded (as the WebUI lends it) fills width/height with 1024 and turns gradient
    checkpointing on when the page loads."""
    import gradio as gr

    from embed_studio.backends.provider import LoadedBackendProvider
    from embed_studio.backends.standalone import StandaloneBackend
    from embed_studio.ui.train_tab import TrainTab

    for model, side in ((tiny_sdxl, 1024), (tiny_model, 512)):
        provider = LoadedBackendProvider(StandaloneBackend.load(model, "cpu"), tmp_path / "out")
        host = UiHost(name="webui", models_dir=tmp_path, output_dir=tmp_path, jobs=JobRegistry(),
                      backend_provider=provider)  # fmt: skip
        with gr.Blocks():
            tab = TrainTab(host)
            tab.create_ui()
        for name in ("width", "height"):
            value = tab.fields[name].value
            assert (value() if callable(value) else value) == side
        # Gradient checkpointing too: on for SDXL (batch 1 at 1024 fits 12 GB only with it), off for SD 1.x.
        value = tab.fields["gradient_checkpointing"].value
        assert (value() if callable(value) else value) is (side == 1024)


@pytest.fixture(scope="module")
def models_folder(tmp_path_factory, tiny_model) -> Path:
    """A models folder with a tiny SD 1.x diffusers folder and a tiny single-file SDXL checkpoint (sgm layout)."""
    from tiny_sdxl import build_tiny_sdxl_single_file

    models = tmp_path_factory.mktemp("models")
    (models / "sd1-diffusers").symlink_to(tiny_model)
    (models / "xl.safetensors").symlink_to(build_tiny_sdxl_single_file(tmp_path_factory.mktemp("xl")))
    return models


@pytest.mark.browser
def test_the_form_follows_the_model_where_its_fields_are_untouched(tmp_path, models_folder, serve_blocks, train_panel):
    """Picking or typing a model sets the area, gradient checkpointing, the VAE choice and the SDXL hint from the
    model's headers; a width, height or checkbox the user changed stays as they set it."""
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    sd1, sdxl = str(models_folder / "sd1-diffusers"), str(models_folder / "xl.safetensors")
    host = UiHost(
        name="standalone", models_dir=tmp_path / "tagger-models", output_dir=tmp_path / "out", jobs=JobRegistry(),
        backend_provider=StandaloneProvider(tmp_path / "out", device="cpu"), prefs_path=tmp_path / "ui-settings.json",
    )  # fmt: skip
    with gr.Blocks(analytics_enabled=False) as demo:
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({TrainTab.elem_id: tab})
    page = train_panel.page
    page.goto(serve_blocks(demo))
    train_panel.open_subtab("Train")
    page.locator("#es-train-advanced").get_by_text("Advanced").first.click()
    checkpointing = page.locator("#es-train-gradient-checkpointing input").first

    def type_model(path: str) -> None:
        box = page.locator("#es-train-model textarea").first
        box.fill(path)
        box.press("Enter")

    def expect(width: int, height: int, checked: bool, sdxl: bool) -> None:
        page.wait_for_function(
            "([w, h, c]) => document.querySelector('#es-train-width input').value === w"
            " && document.querySelector('#es-train-height input').value === h"
            " && document.querySelector('#es-train-gradient-checkpointing input').checked === c",
            arg=[str(width), str(height), checked],
        )
        hint, vae = page.locator("#es-train-model-hint").last, page.locator("#es-train-vae").first
        if sdxl:
            train_panel.wait_text("es-train-model-hint", "Hypernetworks train on SD 1.x/2.x models here")
            assert vae.is_visible()
        else:
            page.wait_for_function("() => !document.querySelector('#es-train-model-hint')?.offsetParent")
            assert not hint.is_visible() and not vae.is_visible()

    expect(512, 512, False, sdxl=False)
    type_model(sdxl)
    expect(1024, 1024, True, sdxl=True)
    type_model(sd1)
    expect(512, 512, False, sdxl=False)
    # Values set by hand stay: a height, then the checkbox (which both models' defaults could explain).
    train_panel.fill("es-train-height", 640)
    type_model(sdxl)
    expect(1024, 640, True, sdxl=True)
    checkpointing.uncheck()
    type_model(sd1)
    expect(512, 640, False, sdxl=False)
    # The picker too: back to SDXL from the models folder; the unchecked box stays unchecked.
    folder_box = page.locator("#es-train-models-folder textarea").first
    folder_box.fill(str(models_folder))
    folder_box.press("Enter")
    page.wait_for_selector(f"#es-train-model-pick >> text=2 in {models_folder}")
    page.locator("#es-train-model-pick input").first.click()
    page.locator("ul.options li", has_text="xl.safetensors").first.click()
    expect(1024, 640, False, sdxl=True)
