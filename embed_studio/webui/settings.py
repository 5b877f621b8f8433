"""Embed Studio's section of the WebUI Settings page; every key is prefixed embed_studio_."""

from __future__ import annotations

from modules import shared

SECTION = ("embed-studio", "Embed Studio")
ALLOWED_FOLDERS_KEY = "embed_studio_allowed_folders"


def on_ui_settings() -> None:
    options = {
        "embed_studio_booru_user_agent_name": shared.OptionInfo(
            "", "Your e621 user name, sent in the User-Agent e621 requires"
        ),
        "embed_studio_tagger_default_model": shared.OptionInfo("wd-v1-4-convnext-tagger-v2", "Default tagger model"),
        ALLOWED_FOLDERS_KEY: shared.OptionInfo(
            "",
            "More folders whose files Train and the API may train, and where they may write run logs (comma-separated "
            "paths; the embeddings, hypernetworks and textual_inversion folders always are)",
        ),
    }
    for key, info in options.items():
        info.section = SECTION
        shared.opts.add_option(key, info)
