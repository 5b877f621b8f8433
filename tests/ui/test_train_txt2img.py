"""The Train tab's "Read parameters from the txt2img tab": only where the host hands txt2img's components in."""

from __future__ import annotations

import gradio as gr
import pytest

from embed_studio.backends.provider import StandaloneProvider
from embed_studio.errors import UserInputError
from embed_studio.ui import train_form as form
from embed_studio.ui.host import UiHost
from embed_studio.ui.train_tab import TrainTab
from embed_studio.ui.train_txt2img import TXT2IMG_PREVIEW_PARAMS, txt2img_values


def _tab(tmp_path, extras=None) -> TrainTab:
    host = UiHost(
        name="test", models_dir=tmp_path, output_dir=tmp_path, backend_provider=StandaloneProvider(tmp_path / "out"),
        extras=extras or {},
    )  # fmt: skip
    with gr.Blocks():
        if extras is not None:  # stand-ins for txt2img's prompt, negative, steps, sampler, CFG, seed, width, height,
            # schedule type
            host.extras[TXT2IMG_PREVIEW_PARAMS] = [
                gr.Textbox(), gr.Textbox(), gr.Slider(), gr.Dropdown(), gr.Slider(), gr.Number(), gr.Slider(),
                gr.Slider(), gr.Dropdown(),
            ]  # fmt: skip
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({})
    return tab


def test_standalone_has_no_txt2img_checkbox(tmp_path):
    tab = _tab(tmp_path)
    assert tab.txt2img.checkbox is None and tab.txt2img.inputs == []


def test_txt2img_values_become_the_preview_fields():
    values = txt2img_values(["mychar, smiling", "blurry", 25, "DPM++ 2M", 5.5, 1234, 768, 512, "Automatic"])
    assert values == {
        "preview_prompt": "mychar, smiling", "preview_negative_prompt": "blurry", "preview_steps": 25,
        "preview_sampler": "dpmpp_2m", "preview_cfg_scale": 5.5, "preview_seed": 1234, "preview_width": 768,
        "preview_height": 512, "preview_scheduler": "Automatic",
    }  # fmt: skip
    empty = txt2img_values([None, None, 20, "Euler a", 7, "", 512, 512, None])
    assert empty["preview_seed"] == -1 and empty["preview_scheduler"] == "Automatic"  # boxes left empty
    # Any sampler and schedule type txt2img has, taken as they are (the run's check speaks for the host).
    wide = txt2img_values(["x", "", 20, "DPM++ 3M SDE", 7, -1, 512, 512, "Exponential"])
    assert (wide["preview_sampler"], wide["preview_scheduler"]) == ("dpmpp_3m_sde", "Exponential")
    with pytest.raises(UserInputError, match="could not be read"):
        txt2img_values(["x", "", 20, "Euler", 7, -1, 512, 512])  # a WebUI without txt2img's schedule type


def test_a_ticked_box_reads_txt2img_at_train_time(tmp_path):
    tab = _tab(tmp_path, extras={})
    assert tab.txt2img.checkbox is not None and len(tab.txt2img.inputs) == 10
    values = [form.default(name) for name in tab.fields]
    sent = [True, "p", "", 20, "DPM++ 2M SDE", 7, -1, 512, 512, "Karras"]
    first = next(tab._train(None, "", str(tmp_path), "embedding", "nothing.pt", "", *values, *sent))
    assert "txt2img" not in first[1] and "has no images" in first[1]  # the sampler passed; the next check speaks
    unticked = next(tab._train(None, "", str(tmp_path), "embedding", "nothing.pt", "", *values, False, *sent[1:]))
    assert "txt2img" not in unticked[1]  # the form alone: its own check (no images in the folder) speaks
    ticked = [True, "from t2i", "", 9, "Euler", 6, 3, 64, 96, "Karras"]
    merged = tab.txt2img.apply({"preview_prompt": "form", "preview_steps": 2}, ticked)
    assert merged["preview_prompt"] == "from t2i" and merged["preview_steps"] == 9 and merged["preview_height"] == 96
    assert merged["preview_scheduler"] == "Karras"
    assert tab.txt2img.apply({"preview_prompt": "form"}, [False, "from t2i"]) == {"preview_prompt": "form"}
