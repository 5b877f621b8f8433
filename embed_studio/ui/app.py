"""The Embed Studio tab: one gr.Blocks holding every implemented sub-tab, in workflow order."""

from __future__ import annotations

import importlib
from typing import Any

import gradio as gr

from embed_studio.ui import assets
from embed_studio.ui.base import Tab
from embed_studio.ui.host import UiHost

# Workflow order of the guides: fetch, tag, prune, train. A module listed here that does not
# exist yet is simply not shown, so the tab never offers a panel that does not work.
TAB_MODULES = ("booru_tab", "tagger_tab", "dataset_tab", "train_tab")

# A page that follows a job holds one queue worker while the job runs: with gradio's default of one worker,
# every click in every other tab would wait for a training run to end. The WebUI queues 64 at once (webui.py).
QUEUE_WORKERS = 64


def available_tabs() -> list[type[Tab]]:
    tabs = []
    for name in TAB_MODULES:
        try:
            module = importlib.import_module(f"embed_studio.ui.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"embed_studio.ui.{name}":
                raise
            continue
        tabs.append(module.TAB)
    return tabs


def build_studio(host: UiHost) -> gr.Blocks:
    """Build the whole studio; the WebUI embeds it as a top-level tab, standalone launches it."""
    standalone = host.name != "webui"
    css = assets.stylesheet() if standalone else None  # the WebUI includes style.css itself
    with gr.Blocks(analytics_enabled=False, css=css, title="Embed Studio") as studio, gr.Column(elem_id="es-root"):
        tab_classes = available_tabs()
        tabs: dict[str, Tab] = {}
        if not tab_classes:
            gr.Markdown("No Embed Studio panels are installed yet.")
        with gr.Tabs(elem_id="es-tabs"):
            for cls in tab_classes:
                tab = cls(host)
                with gr.Tab(cls.title, elem_id=cls.elem_id):
                    tab.create_ui()
                tabs[cls.elem_id] = tab
        for tab in tabs.values():
            tab.set_callbacks(tabs)
        if standalone and (js := assets.loader_js()):
            studio.load(None, None, None, _js=js)
    return studio


def launch_standalone(studio: gr.Blocks, server_name: str, server_port: int, **kwargs: Any) -> None:
    """Serve the studio as `embed-studio ui` does: a queue wide enough for many tabs, no API page."""
    studio.queue(concurrency_count=QUEUE_WORKERS).launch(
        server_name=server_name, server_port=server_port, show_api=False, **kwargs
    )
