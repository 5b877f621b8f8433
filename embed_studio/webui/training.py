"""Training inside the WebUI: one shared WebUIProvider, and jobs that create or train files on the loaded model."""

from __future__ import annotations

import threading
from typing import Any

from embed_studio.backends.provider import CHECKPOINT_VAE, resolve_target
from embed_studio.errors import UserInputError
from embed_studio.jobs import Job, registry

_provider_lock = threading.Lock()
_provider: Any = None


def get_provider() -> Any:
    """The process-wide WebUIProvider (one WebUI model, one training run at a time)."""
    global _provider
    with _provider_lock:
        if _provider is None:
            from embed_studio.backends.webui import WebUIProvider

            _provider = WebUIProvider()
        return _provider


def training_config(config: dict[str, Any], provider: Any) -> tuple[Any, str]:
    """A validated TrainConfig for the WebUI (its model, folders and CLIP skip as defaults) and the VAE choice."""
    from embed_studio.train.config import TrainConfig

    data = dict(config)
    kind = data.get("kind", "embedding")
    data["target"] = str(resolve_target(kind, data.get("target"), provider))
    data["model"] = data.get("model") or provider.model_title()
    data.setdefault("clip_skip", provider.default_clip_skip())
    if "width" not in data and "height" not in data and hasattr(provider, "default_size"):
        data["width"] = data["height"] = provider.default_size()
    if provider.templates_dir is not None:
        data.setdefault("templates_dir", str(provider.templates_dir))
    cfg = TrainConfig.from_dict(data)
    if not cfg.log_dir:
        cfg.log_dir = str(provider.log_dir / cfg.name)
    cfg.vae = cfg.vae or CHECKPOINT_VAE
    return cfg.validate(), cfg.vae


def _mirror(job: Job) -> Job:
    from embed_studio.webui import progress

    progress.mirror_job(job)
    return registry.submit(job)


def start_training_job(config: dict[str, Any], provider: Any = None) -> Job:
    """Start training on the WebUI's loaded model; `config` is TrainConfig's fields plus an optional "vae".

    The job holds the WebUI's GPU lock while it runs, shows in its progress bar, and makes the trained
    file usable in txt2img (the embedding/hypernetwork lists are reloaded) when it ends, also when cancelled.
    """
    return _mirror(make_training_job(config, provider))


def make_training_job(config: dict[str, Any], provider: Any = None) -> Job:
    """The training Job, not started (for UiHost.submit(), which mirrors and starts it)."""
    from embed_studio.train.job import make_train_job

    provider = provider or get_provider()
    cfg, vae = training_config(config, provider)
    return make_train_job(cfg, provider, vae)


def start_create_job(
    kind: str,
    name: str,
    *,
    init_text: str = "*",
    n_vectors: int = 1,
    sizes: tuple[int, ...] = (768, 320, 640, 1280),
    overwrite: bool = False,
    provider: Any = None,
    **hypernetwork_options: Any,
) -> Job:
    """Create an embedding (init text through the WebUI's tokenizer) or a hypernetwork in the WebUI's folders.

    The job's result is the new file's path.
    """
    from embed_studio.train.create import clean_name, create_embedding, create_hypernetwork

    provider = provider or get_provider()
    name = clean_name(name)
    path = resolve_target(kind, name, provider)
    if path.exists() and not overwrite:
        raise UserInputError(f"{path} already exists. Pick another name, or train that file to continue it.")

    def work(ctx: Any) -> str:
        nonlocal path
        with provider.session("", CHECKPOINT_VAE, provider.default_clip_skip()) as backend:
            if kind == "embedding":
                from embed_studio.formats.embedding import save_embedding

                data = create_embedding(backend, name, init_text, n_vectors, clip_skip=provider.default_clip_skip())
                if data.is_sdxl and path.suffix == ".pt":
                    path = path.with_suffix(".safetensors")  # the WebUI reads SDXL vectors with their step from these
                    if path.exists() and not overwrite:
                        raise UserInputError(f"{path} already exists. Pick another name, or train that file.")
                path.parent.mkdir(parents=True, exist_ok=True)
                save_embedding(data, path)
            else:
                from embed_studio.formats.hypernetwork import save_hypernetwork

                usable = [s for s in sizes if s in backend.context_sizes] or list(backend.context_sizes)
                data = create_hypernetwork(name, usable, backend=backend, **hypernetwork_options)
                path.parent.mkdir(parents=True, exist_ok=True)
                save_hypernetwork(data, path)
        provider.refresh(kind, path)
        return str(path)

    return _mirror(Job("create", work, total=1))
