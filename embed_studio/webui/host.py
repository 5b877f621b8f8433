"""Build the UiHost for tabs running inside the WebUI: its folders, settings and progress bar."""

from __future__ import annotations

from pathlib import Path

from modules import paths_internal, shared

from embed_studio.ui.host import UiHost
from embed_studio.ui.train_txt2img import TXT2IMG_PREVIEW_PARAMS
from embed_studio.webui import progress, settings
from embed_studio.webui.provider import get_provider
from embed_studio.webui.txt2img_params import txt2img_preview_params


def models_dir() -> Path:
    flag = getattr(shared.cmd_opts, "embed_studio_models_dir", None)
    return Path(flag) if flag else Path(paths_internal.models_path) / "embed-studio"


def make_host() -> UiHost:
    return UiHost(
        name="webui",
        models_dir=models_dir(),
        output_dir=Path(paths_internal.data_path) / "outputs" / "embed-studio",
        on_job_started=progress.mirror_job,
        backend_provider=get_provider(),
        settings=settings.read,
        extras={
            "embeddings_dir": Path(shared.cmd_opts.embeddings_dir),
            "hypernetworks_dir": Path(shared.cmd_opts.hypernetwork_dir),
            TXT2IMG_PREVIEW_PARAMS: txt2img_preview_params(),
        },
    )
