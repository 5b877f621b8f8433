"""The Embed Studio tab: one gr.Blocks holding every implemented sub-tab, in workflow order."""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
        with gr.Tabs(elem_id="es-tabs") as panels:
            for cls in tab_classes:
                tab = cls(host)
                tab.panels = panels
                with gr.Tab(cls.title, id=cls.elem_id, elem_id=cls.elem_id):
                    tab.create_ui()
                tabs[cls.elem_id] = tab
        for tab in tabs.values():
            tab.set_callbacks(tabs)
        if standalone and (js := assets.loader_js()):
            studio.load(None, None, None, _js=js)
    return studio


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
ANY_ADDRESS = ("0.0.0.0", "::", "")


def serve(studio: gr.Blocks, host: str = "127.0.0.1", port: int = 7870, *, block: bool = True) -> str:
    """Serve the studio standalone on host:port, to its own page only; returns its URL.

    gradio 3.41 allows every origin (CORS `*`), and its websocket queue is open to any page anyway (browsers
    apply no CORS to websockets), so any website open in the same browser could call every handler and read
    files under the start folder through /file=. Here a request from another origin, or for another host name
    (DNS rebinding), is refused, and /file= serves only gradio's own temporary folder (uploads and the copies
    it makes of images it shows).
    """
    from fastapi.middleware.cors import CORSMiddleware
    from starlette.middleware import Middleware

    gradio_temp = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    guard = Middleware(OwnPageOnly, hosts=own_hosts(host, port), file_root=gradio_temp)
    studio.queue(concurrency_count=QUEUE_WORKERS)  # wide as in the WebUI: a tab following a run blocks no other
    app, url, _ = studio.launch(
        server_name=host, server_port=port, show_api=False, prevent_thread_lock=True,
        app_kwargs={"middleware": [guard]},
    )  # fmt: skip
    # The guard already refuses cross-origin requests; without gradio's CORS layer no answer even claims to
    # allow one (a preflight would otherwise get "Access-Control-Allow-Origin: *").
    app.user_middleware = [m for m in app.user_middleware if m.cls is not CORSMiddleware]
    app.middleware_stack = app.build_middleware_stack()
    if block:
        studio.block_thread()
    return url


def own_hosts(host: str, port: int) -> set[str] | None:
    """The Host header values the app answers to; None when it listens on every address (any host name)."""
    if host in ANY_ADDRESS:
        return None
    names = set(LOOPBACK_NAMES) if host in ("127.0.0.1", "localhost", "::1") else {f"[{host}]" if ":" in host else host}
    return {f"{name}:{port}".lower() for name in names}


class OwnPageOnly:
    """ASGI middleware: HTTP and websocket requests only from the app's own page, files only from `file_root`."""

    def __init__(self, app: Any, hosts: set[str] | None, file_root: Path):
        self.app = app
        self.hosts = hosts
        self.file_root = Path(os.path.abspath(file_root))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            reason = self.refusal(scope)
            if reason:
                await self.refuse(scope, send, reason)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: dict) -> str:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        host = headers.get("host", "").lower()
        if self.hosts is not None and host not in self.hosts:
            return f"This app answers only as {', '.join(sorted(self.hosts))}."
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host:
            return "Cross-origin requests are refused: open the app's own page."
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/file="):
            wanted = path[len("/file=") :]
            inside = [Path(os.path.abspath(wanted)), Path(wanted).resolve()]
            if not all(p.is_relative_to(self.file_root) for p in inside):
                return "File not allowed."
        return ""

    async def refuse(self, scope: dict, send: Any, reason: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        body = reason.encode("utf-8")
        await send({
            "type": "http.response.start", "status": 403,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})
