"""The two-phase tab protocol: every tab builds its components, then wires callbacks."""

from __future__ import annotations

from typing import Any, ClassVar

import gradio as gr

from embed_studio.ui.host import UiHost


class Tab:
    """A sub-tab of the Embed Studio tab.

    create_ui() builds the components inside the tab; set_callbacks() runs after every tab
    exists, so a tab can wire to another's components (e.g. the tagger's output folder feeds
    the dataset editor).
    """

    title: ClassVar[str]
    elem_id: ClassVar[str]  # prefixed "es-"

    # The studio's gr.Tabs, set before set_callbacks(): a next-step button switches to the next panel with it.
    panels: Any = None

    def __init__(self, host: UiHost):
        self.host = host

    @staticmethod
    def show_panel(elem_id: str) -> Any:
        """The update that makes the studio show another panel (its elem_id is its tab id too)."""
        return gr.Tabs.update(selected=elem_id)

    def create_ui(self) -> None:
        raise NotImplementedError

    def set_callbacks(self, tabs: dict[str, Tab]) -> None:
        """Wire events; `tabs` maps each tab's elem_id to the tab."""


def hidden() -> Any:
    """The update that hides a component (a next-step button while its step runs again)."""
    return gr.update(visible=False)
