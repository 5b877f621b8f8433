"""txt2img's preview parameters for the Train tab's "Read parameters from the txt2img tab" checkbox.

The WebUI hands the very components its own Train tab reads (prompt, negative prompt, steps, sampler, CFG scale,
seed, width, height) to every on_ui_train_tabs callback; its Train tab is built after txt2img and before the
extension tabs, so they are here when Embed Studio's tab is built. A UI reload builds them anew and the callback
runs again: the list always belongs to the latest build.
"""

from __future__ import annotations

from typing import Any

from modules import script_callbacks

_components: list[Any] = []  # the latest UI build's, shared by every browser (components, not per-user state)


def _on_train_tabs(params: Any) -> None:
    _components[:] = list(getattr(params, "txt2img_preview_params", None) or [])


def register() -> None:
    script_callbacks.on_ui_train_tabs(_on_train_tabs, name="embed_studio_txt2img_params")


def txt2img_preview_params() -> list[Any]:
    """The components in the WebUI's order (empty before its Train tab was built)."""
    return list(_components)
