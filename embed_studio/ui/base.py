"""The two-phase tab protocol: every tab builds its components, then wires callbacks."""

from __future__ import annotations

from typing import ClassVar

from embed_studio.ui.host import UiHost


class Tab:
    """A sub-tab of the Embed Studio tab.

    create_ui() builds the components inside the tab; set_callbacks() runs after every tab
    exists, so a tab can wire to another's components (e.g. the tagger's output folder feeds
    the dataset editor).
    """

    title: ClassVar[str]
    elem_id: ClassVar[str]  # prefixed "es-"

    def __init__(self, host: UiHost):
        self.host = host

    def create_ui(self) -> None:
        raise NotImplementedError

    def set_callbacks(self, tabs: dict[str, Tab]) -> None:
        """Wire events; `tabs` maps each tab's elem_id to the tab."""
