"""The one training Job that the CLI, the Train tab and the WebUI's API all run: a provider's model, then train()."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from embed_studio.backends.provider import CHECKPOINT_VAE, BackendProvider
from embed_studio.errors import DatasetError, FileFormatError
from embed_studio.fileio import ensure_writable_dir, remove_stale_temps
from embed_studio.jobs import Job
from embed_studio.train.config import TrainConfig


def _print_to_stderr(message: str) -> None:
    print(f"Embed Studio: {message}", file=sys.stderr)


def make_train_job(
    config: TrainConfig,
    provider: BackendProvider,
    vae: str = CHECKPOINT_VAE,
    log: Callable[[str], None] = _print_to_stderr,
) -> Job:
    """A Job (kind "train") that borrows the provider's model for the run and trains `config` on it.

    The job's stats carry what a page needs to follow the run again after a reload (kind, target,
    log_dir) and the run's notes (resume details, warnings). The host's lists are refreshed when the
    job ends, also after an error or an interrupt, so the saved file is usable at once.
    """
    from embed_studio.train.loop import train

    if config.preview_score and not config.score_models_dir and getattr(provider, "tagger_models_dir", None):
        config.score_models_dir = str(provider.tagger_models_dir)  # the host's Tagger panel's downloads
    config.validate()
    check_before_loading(config)

    def work(ctx: Any) -> Any:
        notes: list[str] = []

        def note(message: str) -> None:
            log(message)
            notes.append(message)
            ctx.progress(None, notes=list(notes))  # done=None keeps the step count

        ctx.progress(
            0, config.max_steps, f"Waiting for the model ({config.name})…", label="step", kind=config.kind,
            target=str(config.target_path), log_dir=str(config.log_path), batch_size=config.batch_size,
            grad_accum=config.grad_accum, settings={**config.to_dict(), "vae": vae},
        )  # fmt: skip
        try:
            with provider.session(config.model, vae, config.clip_skip) as backend:
                ctx.set_text(
                    f"Training {config.name} on {getattr(backend, 'checkpoint_title', None) or config.model} "
                    f"[{backend.checkpoint_hash or 'no hash'}], VAE: {getattr(backend, 'vae_label', vae)}, "
                    f"CLIP skip {config.clip_skip}"
                )
                return train(config, backend, ctx, log=note)
        finally:
            if config.target_path.is_file():
                provider.refresh(config.kind, config.target_path)

    return Job("train", work, total=config.max_steps)


# Where a run writes inside its log folder: numbered copies, previews, preview embeddings.
_LOG_SUBFOLDERS = ("embeddings", "hypernetworks", "images", "image_embeddings")


def check_before_loading(config: TrainConfig) -> None:
    """Check every path of a run before the model loads (minutes), not at its first save.

    The file to train, its folder and the log folder (writable: a probe file, created if missing), the
    dataset (images in it) and the prompt template. Temporaries a killed earlier run left beside the
    file and in the log folder are removed here, at the start of the next run.
    """
    from embed_studio.dataset.folder import list_images
    from embed_studio.train.prompts import load_template_lines

    target = config.target_path
    if not target.is_file():
        what = "embedding" if config.kind == "embedding" else "hypernetwork"
        raise FileFormatError(
            f"{target} {'is not a file' if target.exists() else 'does not exist'}. Create it first: embed-studio "
            f"create {what} {target.stem} --model ... (or pick an existing {what} file)."
        )
    ensure_writable_dir(target.parent, "folder of the file to train")
    log_dir = ensure_writable_dir(config.log_path, "log folder")
    if not list_images(config.dataset):
        raise DatasetError(f"{config.dataset} has no images. Put .png/.jpg/.webp images (with .txt captions) in it.")
    load_template_lines(config.template, config.templates_dir or None, require_name=config.kind == "embedding")
    for folder in (target.parent, log_dir, *(log_dir / sub for sub in _LOG_SUBFOLDERS)):
        remove_stale_temps(folder)
