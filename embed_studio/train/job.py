"""The one training Job that the CLI, the Train tab and the WebUI's API all run: a provider's model, then train()."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from embed_studio.backends.provider import CHECKPOINT_VAE, BackendProvider
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

    config.validate()

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
