"""Checks before continuing a file: the guides' "changed CLIP skip killed my embedding" and checkpoint drift."""

from __future__ import annotations

from typing import Any

from embed_studio.backends.base import Backend
from embed_studio.errors import UserInputError


def check_resume(data: Any, step: int, clip_skip: int, backend: Backend) -> list[str]:
    """Raise when resuming would ruin the file; return warnings for what is merely risky.

    `data` is the loaded EmbeddingData/HypernetworkData (its .extra and .sd_checkpoint).
    """
    if not step:
        return []
    recorded = (getattr(data, "extra", None) or {}).get("embed_studio", {}).get("clip_skip")
    if recorded is not None and int(recorded) != int(clip_skip):
        raise UserInputError(
            f"This file was trained with CLIP skip {recorded}, and this run would use CLIP skip {clip_skip}: "
            f"continuing with another CLIP skip ruins what it learned. Set CLIP skip back to {recorded} "
            "(WebUI: Settings → Stable Diffusion → Clip skip), or create a new file for this CLIP skip."
        )
    warnings = []
    trained_on = getattr(data, "sd_checkpoint", None)
    if trained_on and backend.checkpoint_hash and trained_on != backend.checkpoint_hash:
        name = getattr(data, "sd_checkpoint_name", None) or "another checkpoint"
        warnings.append(
            f"This file was trained on {name} [{trained_on}] and now continues on "
            f"{backend.checkpoint_name or 'this model'} [{backend.checkpoint_hash}]; results may drift."
        )
    if recorded is None:
        warnings.append(f"The file does not record its CLIP skip; make sure {clip_skip} is what it was trained with.")
    return warnings
