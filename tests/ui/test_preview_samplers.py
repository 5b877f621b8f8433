"""The standalone Train form offers every diffusers scheduler the model takes as its preview sampler."""

from __future__ import annotations

from embed_studio.backends.base import PREVIEW_SAMPLERS
from embed_studio.backends.provider import StandaloneProvider
from embed_studio.ui.host import UiHost


def _sampler_dropdown(tmp_path, provider):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    host = UiHost(name="standalone", models_dir=tmp_path, output_dir=tmp_path, backend_provider=provider)
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
    return tab.fields["preview_sampler"]


def test_the_standalone_sampler_dropdown_lists_the_diffusers_schedulers(tmp_path):
    from embed_studio.backends.standalone import available_samplers

    dropdown = _sampler_dropdown(tmp_path, StandaloneProvider(tmp_path / "out"))
    assert dropdown.choices == available_samplers()
    assert {"unipc", "heun", "dpmpp_2m_karras", "dpm2_a", "deis"} <= set(dropdown.choices)
    assert set(PREVIEW_SAMPLERS) <= set(dropdown.choices) and dropdown.value == "euler_a"


def test_a_host_without_a_sampler_list_keeps_the_samplers_every_backend_draws(tmp_path):
    class WebUiLike(StandaloneProvider):
        preview_samplers = None  # the WebUI's provider has none: its own four

    dropdown = _sampler_dropdown(tmp_path, WebUiLike(tmp_path / "out"))
    assert dropdown.choices == list(PREVIEW_SAMPLERS)
