"""Register Embed Studio's tab, settings and API routes with the WebUI's script_callbacks."""

from __future__ import annotations

from modules import script_callbacks, shared

from embed_studio.webui import settings


def on_ui_tabs():
    from embed_studio.ui.app import build_studio
    from embed_studio.webui.host import make_host

    return [(build_studio(make_host()), "Embed Studio", "embed_studio")]


def on_app_started(_demo, app) -> None:
    if getattr(shared.cmd_opts, "embed_studio_no_api", False):
        return
    from embed_studio.jobs import registry
    from embed_studio.webui.api import add_routes

    add_routes(app, registry, shared.cmd_opts.api_auth)


def _check_preview_sampler(name: str, scheduler: str, what: str) -> None:
    from embed_studio.backends.webui import webui_sampler

    webui_sampler(name, scheduler, what)


def register() -> None:
    from embed_studio.backends.samplers import set_host_check
    from embed_studio.webui import txt2img_params

    set_host_check(_check_preview_sampler)  # previews here draw with the WebUI's samplers, not diffusers'
    txt2img_params.register()  # before on_ui_tabs: the WebUI's Train tab, which hands them over, is built first
    script_callbacks.on_ui_tabs(on_ui_tabs, name="embed_studio")
    script_callbacks.on_ui_settings(settings.on_ui_settings, name="embed_studio")
    script_callbacks.on_app_started(on_app_started, name="embed_studio")
