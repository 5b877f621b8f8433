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
