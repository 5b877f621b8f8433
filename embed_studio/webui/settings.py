"""Embed Studio's section of the WebUI Settings page; every key is prefixed embed_studio_."""

from __future__ import annotations

from typing import Any

from modules import shared

SECTION = ("embed-studio", "Embed Studio")
PREFIX = "embed_studio_"


def read(name: str) -> Any:
    """The saved value of embed_studio_<name>, read when a job starts (so a change applies at once)."""
    return getattr(shared.opts, PREFIX + name, None)


ALLOWED_FOLDERS_KEY = "embed_studio_allowed_folders"


def on_ui_settings() -> None:
    options = {
        "embed_studio_booru_user_agent_name": shared.OptionInfo(
            "", "Your booru user name, sent in the User-Agent e621 requires when the Booru panel's name is empty"
        ),
        ALLOWED_FOLDERS_KEY: shared.OptionInfo(
            "",
            "More folders whose files Train and the API may train, and where they may write run logs (comma-separated "
            "paths; the embeddings, hypernetworks and textual_inversion folders always are)",
        ),
    }
    for key, info in options.items():
        info.section = SECTION
        shared.opts.add_option(key, info)
