"""In the real WebUI: the extension loads cleanly, adds one tab, its settings and its API."""

from __future__ import annotations

import re

import pytest
import requests

pytestmark = pytest.mark.webui


def test_one_embed_studio_tab(webui):
    config = requests.get(f"{webui.url}/config", timeout=30).json()
    tabs = [
        c["props"]
        for c in config["components"]
        if c.get("type") == "tabitem" and c["props"].get("label") == "Embed Studio"
        and not c["props"].get("elem_id", "").startswith("settings_")
    ]  # fmt: skip
    assert [t.get("elem_id") for t in tabs] == ["tab_embed_studio"]


def test_api_routes(webui):
    assert requests.get(f"{webui.url}/embed-studio/v1/version", timeout=10).json()["version"]
    assert requests.get(f"{webui.url}/embed-studio/v1/jobs", timeout=10).json() == []
    assert requests.get(f"{webui.url}/embed-studio/v1/jobs/nope", timeout=10).status_code == 404


def test_settings_section(webui):
    # Registered in Settings → Embed Studio and read from the settings file (the Booru panel's use of it is
    # checked in test_webui_panels.py).
    options = requests.get(f"{webui.url}/sdapi/v1/options", timeout=10).json()
    assert options["embed_studio_booru_user_agent_name"] == webui.booru_user
    config = requests.get(f"{webui.url}/config", timeout=30).json()
    labels = [c["props"].get("label") for c in config["components"] if c.get("type") == "tabitem"]
    assert "Embed Studio" in [label for label in labels if label] and any(
        c["props"].get("elem_id") == "settings_embed-studio" for c in config["components"] if c.get("type") == "tabitem"
    ), "no Embed Studio section in Settings"


def test_no_error_of_ours_in_the_log(webui):
    log = webui.log.read_text(errors="replace")
    # Every traceback block that mentions our code is a failure; the WebUI's own git-remote
    # warning about an extension without an origin is not ours.
    blocks = re.split(r"\n(?=\*\*\* |Traceback )", log)
    ours = [b for b in blocks if ("embed_studio" in b or "embed-studio" in b) and ("Error" in b or "Traceback" in b)]
    ours = [b for b in ours if "Failed reading extension data from Git repository" not in b]
    assert not ours, "\n".join(ours)[:4000]
