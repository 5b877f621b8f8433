"""The Train tab's "Read parameters from the txt2img tab" for previews, where the host has a txt2img tab (the WebUI).

Like the WebUI's own Train tab: the txt2img values are read when Train is pressed and replace the form's preview
prompt, negative prompt, steps, sampler, CFG scale, seed and size for that run (its config.json records them),
and, beyond the WebUI's own Train tab, txt2img's schedule type. The host hands in txt2img's components as
host.extras[TXT2IMG_PREVIEW_PARAMS], in the WebUI's order with the schedule type last; the standalone app has
none, so the checkbox is absent there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from embed_studio.backends.samplers import AUTOMATIC, sampler_key
from embed_studio.errors import UserInputError

TXT2IMG_PREVIEW_PARAMS = "txt2img_preview_params"
# The WebUI's txt2img_preview_params order (modules/ui.py), then txt2img's schedule type: each value's TrainConfig
# field.
FIELDS = (
    "preview_prompt", "preview_negative_prompt", "preview_steps", "preview_sampler", "preview_cfg_scale",
    "preview_seed", "preview_width", "preview_height", "preview_scheduler",
)  # fmt: skip
LABEL = (
    "Read parameters (prompt, negative prompt, sampler, schedule type, steps, CFG, seed, size) from the txt2img tab "
    "when drawing previews"
)


def txt2img_values(values: Sequence[Any]) -> dict[str, Any]:
    """txt2img's values (in FIELDS' order) as the form's preview fields. The sampler and schedule type are taken as
    they are: the previews draw with the WebUI's own, and the run's check names any the host cannot draw."""
    if len(values) != len(FIELDS):
        raise UserInputError("The txt2img tab's parameters could not be read; untick 'Read parameters from txt2img'.")
    out = dict(zip(FIELDS, values, strict=True))
    out["preview_sampler"] = sampler_key(str(out["preview_sampler"] or "")) or "euler_a"  # the form's spelling
    out["preview_scheduler"] = str(out["preview_scheduler"] or AUTOMATIC)
    if out["preview_seed"] in (None, ""):  # the WebUI's text seed box left empty: a random seed, like -1
        out["preview_seed"] = -1
    out["preview_prompt"] = str(out["preview_prompt"] or "")
    out["preview_negative_prompt"] = str(out["preview_negative_prompt"] or "")
    return out


class Txt2ImgPreview:
    """The checkbox (only where the host offers txt2img's components) and its part in a Train click."""

    def __init__(self, host: Any):
        components = (getattr(host, "extras", None) or {}).get(TXT2IMG_PREVIEW_PARAMS) or []
        self.components = list(components) if len(components) == len(FIELDS) else []
        self.checkbox: gr.Checkbox | None = None

    def create_ui(self) -> None:
        if self.components:
            self.checkbox = gr.Checkbox(False, label=LABEL, elem_id="es-train-preview-from-txt2img")

    @property
    def inputs(self) -> list[Any]:
        """What a Train click sends besides the form: the checkbox and txt2img's components (nothing standalone)."""
        return [self.checkbox, *self.components] if self.checkbox is not None else []

    def apply(self, form_values: dict[str, Any], sent: Sequence[Any]) -> dict[str, Any]:
        """The form's values, with txt2img's preview parameters in place of its own when the box is ticked."""
        if not sent or not sent[0]:
            return form_values
        return {**form_values, **txt2img_values(sent[1:])}
