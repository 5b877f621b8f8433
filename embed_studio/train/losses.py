"""The diffusion loss's knobs: timestep range, noise offset and per-timestep weights (min-SNR, debiased, v-pred)."""

from __future__ import annotations

import torch

from embed_studio.errors import UserInputError


def timestep_bounds(min_timestep: int, max_timestep: int, n_timesteps: int) -> tuple[int, int]:
    """[low, high) clipped to the model's timesteps; UserInputError when nothing is left."""
    high = min(max_timestep, n_timesteps)
    if min_timestep >= high:
        raise UserInputError(
            f"Timestep range {min_timestep}-{max_timestep} leaves nothing of this model's 0-{n_timesteps} timesteps."
        )
    return min_timestep, high


def offset_noise(noise: torch.Tensor, offset: float, generator: torch.Generator) -> torch.Tensor:
    """kohya's noise offset: one extra random shift per image and channel, so the model learns overall brightness."""
    if not offset:
        return noise
    shift = torch.randn((noise.shape[0], noise.shape[1], 1, 1), generator=generator, device=noise.device)
    return noise + offset * shift


def timestep_weights(
    snr: torch.Tensor,
    prediction_type: str,
    *,
    min_snr_gamma: float = 0.0,
    debiased: bool = False,
    v_like_eps: bool = False,
) -> torch.Tensor | None:
    """Per-sample loss weights [B] from the signal-to-noise ratio of each sample's timestep; None when all are off.

    min-SNR (Hang et al. 2023): min(SNR, gamma)/SNR for epsilon targets, min(SNR, gamma)/(SNR + 1) for v targets
    (the v loss already carries a factor SNR + 1). v_like_eps: a v model's loss scaled by SNR/(SNR + 1), which
    gives it the epsilon loss's weighting over timesteps (kohya's scale_v_pred_loss_like_noise_pred); epsilon
    models ignore it. debiased: 1/sqrt(SNR) (kohya's debiased estimation), capped at 1000 for the last timesteps.
    """
    v = prediction_type == "v_prediction"
    weight: torch.Tensor | None = None

    def times(w: torch.Tensor) -> None:
        nonlocal weight
        weight = w if weight is None else weight * w

    if v and v_like_eps:
        times(snr / (snr + 1))
    if min_snr_gamma > 0:
        clipped = torch.clamp(snr, max=min_snr_gamma)
        times(clipped / (snr + 1) if v and not v_like_eps else clipped / snr)
    if debiased:
        times(torch.clamp(1 / torch.sqrt(snr), max=1000.0))
    return weight
