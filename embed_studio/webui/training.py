"""Training inside the WebUI: jobs that create or train files on the loaded model, shown in its progress bar."""

from __future__ import annotations

from typing import Any

from embed_studio.backends.provider import CHECKPOINT_VAE, resolve_log_dir, resolve_target
from embed_studio.errors import UserInputError
from embed_studio.jobs import Job, registry
from embed_studio.webui.provider import get_provider


def training_config(config: Any, provider: Any) -> tuple[Any, str]:
    """A validated TrainConfig for the WebUI (its model, folders and CLIP skip as defaults) and the VAE choice.

    `config` comes from a client: every field is type-checked, the file to train and the log folder are confined to
    the provider's folders, and the dataset, the file and the template must exist, all before a job starts.
    """
    from embed_studio.dataset.folder import list_images, require_folder
    from embed_studio.errors import DatasetError
    from embed_studio.train.config import TrainConfig, require_kind
    from embed_studio.train.prompts import known_template, load_template_lines
    from embed_studio.ui.train_form import model_for

    if not isinstance(config, dict):
        raise UserInputError("The body must be a JSON object of training settings (TrainConfig's fields).")
    data = dict(config)
    data.setdefault("model", "")
    data.setdefault("clip_skip", provider.default_clip_skip())
    if hasattr(provider, "default_size"):
        from embed_studio.backends.provider import apply_new_run_defaults

        apply_new_run_defaults(data, provider)  # SDXL: a 1024x1024 area and gradient checkpointing
    # The WebUI's templates folder, whatever the client says: a client names a template, never a folder or file.
    data["templates_dir"] = str(provider.templates_dir) if provider.templates_dir is not None else ""
    # Likewise the Tagger panel's models folder for preview scoring (make_train_job puts it in).
    data["score_models_dir"] = ""
    fields = TrainConfig.checked_fields(data)
    _check_score_tagger(fields.get("score_tagger", ""), provider)
    kind = require_kind(fields["kind"])
    target = resolve_target(kind, fields["target"], provider)
    if not target.is_file():
        raise UserInputError(
            f"{target} does not exist. Create it first (/embed-studio/v1/create), or name an existing file."
        )
    if not fields["dataset"].strip():
        raise UserInputError("No dataset folder given: name a folder of images with .txt captions.")
    dataset = require_folder(fields["dataset"].strip())
    if not list_images(dataset):
        raise DatasetError(f"{dataset} has no images. Put .png/.jpg/.webp images (with .txt captions) in it.")
    fields.update(target=str(target), dataset=str(dataset), model=fields["model"] or model_for(provider, None))
    cfg = TrainConfig(**fields)
    cfg.log_dir = str(resolve_log_dir(cfg.log_dir, cfg.name, provider))
    cfg.vae = cfg.vae or CHECKPOINT_VAE
    cfg.validate()
    known_template(cfg.template, cfg.templates_dir or None)
    load_template_lines(cfg.template, cfg.templates_dir or None, require_name=kind == "embedding")
    return cfg, cfg.vae


def _check_score_tagger(name: str, provider: Any) -> None:
    """A client names a registry tagger or a folder inside the WebUI's tagger models folder, never another path."""
    from pathlib import Path

    from embed_studio.tagger.registry import find_spec

    name = name.strip()
    if not name or find_spec(name) is not None:
        return
    home = getattr(provider, "tagger_models_dir", None)
    inside = False
    if home is not None:
        try:
            inside = Path(name).expanduser().resolve().is_relative_to(Path(home).resolve())
        except (OSError, ValueError):
            inside = False
    if not inside:
        raise UserInputError(
            f"score_tagger {name!r}: name a tagger from the Tagger panel's list, or a folder inside "
            f"{home or 'its models folder'}."
        )


def create_options(request: Any) -> dict[str, Any]:
    """A /create body as start_create_job's arguments: kind, name and that kind's options, each type-checked against
    the signatures of start_create_job and create_hypernetwork (the one place their types are written)."""
    import inspect
    import typing

    from embed_studio.train.config import check_type, require_kind
    from embed_studio.train.create import create_hypernetwork

    if not isinstance(request, dict):
        raise UserInputError("The body must be a JSON object: kind, name and the create options.")
    options = dict(request)
    kind = require_kind(check_type("kind", options.pop("kind", "embedding"), str))
    hints = typing.get_type_hints(start_create_job)
    allowed = {"name": hints["name"], "overwrite": hints["overwrite"]}
    if kind == "embedding":
        allowed.update(init_text=hints["init_text"], n_vectors=hints["n_vectors"])
    else:
        hn_hints = typing.get_type_hints(create_hypernetwork)
        params = inspect.signature(create_hypernetwork).parameters.values()
        allowed["sizes"] = hints["sizes"]
        allowed.update({p.name: hn_hints[p.name] for p in params if p.kind is p.KEYWORD_ONLY and p.name != "backend"})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserInputError(f"Unknown option(s) for a {kind}: {', '.join(unknown)}. It takes: {', '.join(allowed)}.")
    checked = {key: check_type(key, value, allowed[key], "Option") for key, value in options.items()}
    return {"kind": kind, "name": checked.pop("name", ""), **checked}


def _mirror(job: Job, provider: Any) -> Job:
    # Only the WebUI's model has a progress bar to mirror into (tests hand in a standalone provider).
    if getattr(provider, "name", None) == "webui":
        from embed_studio.webui import progress

        progress.mirror_job(job)
    return registry.submit(job)


def start_training_job(config: Any, provider: Any = None) -> Job:
    """Start training on the WebUI's loaded model; `config` is TrainConfig's fields plus an optional "vae".

    The job holds the WebUI's GPU lock while it runs, shows in its progress bar, and makes the trained
    file usable in txt2img (the embedding/hypernetwork lists are reloaded) when it ends, also when cancelled.
    """
    provider = provider or get_provider()
    return _mirror(make_training_job(config, provider), provider)


def make_training_job(config: Any, provider: Any = None) -> Job:
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
    from embed_studio.train.config import require_kind
    from embed_studio.train.create import clean_name, create_embedding, create_hypernetwork

    require_kind(kind)
    provider = provider or get_provider()
    name = clean_name(name)
    path = resolve_target(kind, name, provider)
    if path.exists() and not overwrite:
        raise UserInputError(f"{path} already exists. Pick another name, or train that file to continue it.")
    if kind == "hypernetwork":
        # Bad options fail now, not in the job: the same options on one small module take milliseconds.
        create_hypernetwork(name, [8], **hypernetwork_options)

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

    return _mirror(Job("create", work, total=1), provider)
