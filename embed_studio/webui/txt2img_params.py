"""txt2img's preview parameters for the Train tab's "Read parameters from the txt2img tab" checkbox.

The WebUI hands the very components its own Train tab reads (prompt, negative prompt, steps, sampler, CFG scale,
seed, width, height) to every on_ui_train_tabs callback; its Train tab is built after txt2img and before the
extension tabs, so they are here when Embed Studio's tab is built. A UI reload builds them anew and the callback
runs again: the list always belongs to the latest build. The WebUI's list lacks txt2img's schedule type (v1.9+
keeps it beside the sampler, in the Sampler script); it is appended from that script.
"""

from __future__ import annotations

from typing import Any

from modules import script_callbacks

_components: list[Any] = []  # the latest UI build's, shared by every browser (components, not per-user state)


def _on_train_tabs(params: Any) -> None:
    from modules import scripts

    components = list(getattr(params, "txt2img_preview_params", None) or [])
    sampler_script = scripts.scripts_txt2img.script("Sampler") if scripts.scripts_txt2img is not None else None
    scheduler = getattr(sampler_script, "scheduler", None)
    # Without it the list stays short and the Train tab shows no txt2img checkbox rather than half of txt2img.
    _components[:] = [*components, scheduler] if components and scheduler is not None else []


def register() -> None:
    script_callbacks.on_ui_train_tabs(_on_train_tabs, name="embed_studio_txt2img_params")


def txt2img_preview_params() -> list[Any]:
    """The components in the WebUI's order, then the schedule type (empty before its Train tab was built)."""
    return list(_components)
