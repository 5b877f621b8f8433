"""Validation: held-back images, their loss on fixed noise and timesteps, a log of it, and what to do when it rises."""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embed_studio.fileio import atomic_write_text
from embed_studio.train.data import TrainingSet, derive_seed

VALIDATION_LOG_NAME = "validation.csv"
COLUMNS = ("step", "val_loss", "best_step")
TIMESTEPS_PER_IMAGE = 4  # spread over the trained range, so the number does not hinge on one noise level
BATCH = 4


def split_images(images: list[Path], share: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(training, validation): about `share` of the images held back, picked by the seed alone.

    At least one image goes each way when share > 0 and there are two or more images.
    """
    if share <= 0 or len(images) < 2:
        return list(images), []
    count = min(len(images) - 1, max(1, round(len(images) * share)))
    rng = random.Random(derive_seed(seed, "validation-split"))
    held = set(rng.sample(sorted(images), count))
    return [p for p in images if p not in held], [p for p in images if p in held]


@dataclass
class _Fixed:
    bucket: int
    indices: list[int]
    noise: torch.Tensor  # [K, B, C, h, w]
    timesteps: torch.Tensor  # [K]


class ValidationSet:
    """Held-back images with noise and timesteps drawn once, so successive checks differ only by what was learned."""

    def __init__(self, data: TrainingSet, prompts: list[list[str]], seed: int, low: int, high: int):
        self.data, self.prompts = data, prompts
        count = TIMESTEPS_PER_IMAGE
        timesteps = torch.tensor([low + int((k + 0.5) * (high - low) / count) for k in range(count)])
        self.batches: list[_Fixed] = []
        for b, bucket in enumerate(data.buckets):
            for start in range(0, len(bucket.paths), BATCH):
                indices = list(range(start, min(start + BATCH, len(bucket.paths))))
                device = bucket.mean.device
                g = torch.Generator(device=device).manual_seed(derive_seed(seed, "validation-noise", b, start))
                shape = (count, len(indices), *bucket.mean.shape[1:])
                self.batches.append(_Fixed(b, indices, torch.randn(shape, generator=g, device=device), timesteps))

    def __len__(self) -> int:
        return len(self.data)

    @torch.no_grad()
    def loss(
        self,
        predict: Callable[[torch.Tensor, torch.Tensor, Any, Any], torch.Tensor],
        condition: Callable[[list[str]], Any],
        sqrt_acp: torch.Tensor,
        sqrt_1m_acp: torch.Tensor,
        v_prediction: bool,
    ) -> float:
        """The mean (alpha/mask-weighted) squared error over every image and fixed timestep."""
        total, count = 0.0, 0
        for fixed in self.batches:
            bucket = self.data.buckets[fixed.bucket]
            latents = bucket.mean.index_select(0, torch.tensor(fixed.indices, device=bucket.mean.device))
            weight = self.data.weights(fixed.bucket, fixed.indices)
            cond = condition([self.prompts[fixed.bucket][i] for i in fixed.indices])
            sizes = self.data.size_conds(fixed.bucket, fixed.indices)  # SDXL's per-image size conditioning
            for noise, t in zip(fixed.noise, fixed.timesteps, strict=True):
                ts = t.repeat(len(fixed.indices)).to(latents.device)
                a = sqrt_acp[ts].view(-1, 1, 1, 1)
                s = sqrt_1m_acp[ts].view(-1, 1, 1, 1)
                wanted = a * noise - s * latents if v_prediction else noise
                prediction = predict(a * latents + s * noise, ts, cond, sizes)
                error = (prediction.float() - wanted.float()) ** 2
                if weight is not None:
                    error = error * weight
                total += float(error.mean()) * len(fixed.indices)
                count += len(fixed.indices)
        return total / count


class ValidationTracker:
    """The best validation loss so far, and when the loss has risen `patience` checks in a row."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = math.inf
        self.best_step: int | None = None
        self.last: float | None = None
        self.rises = 0

    def update(self, step: int, loss: float) -> tuple[bool, bool]:
        """(a new best, time to act); acting starts the count of rises again."""
        improved = loss < self.best
        if improved:
            self.best, self.best_step = loss, step
        self.rises = self.rises + 1 if self.last is not None and loss > self.last else 0
        self.last = loss
        act = bool(self.patience) and self.rises >= self.patience
        if act:
            self.rises = 0
        return improved, act


class ValidationLog:
    """validation.csv (step, val_loss, best_step) beside loss.csv; a resumed run keeps the rows up to its step."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.rows: list[dict] = []
        if path.is_file():
            with open(path, encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        if int(float(row["step"])) <= resume_step:
                            self.rows.append(row)
                    except (KeyError, TypeError, ValueError):
                        continue

    def restore(self, tracker: ValidationTracker) -> None:
        """Give a resumed run's tracker the earlier checks, so a worse loss does not replace the best copy."""
        for row in self.rows:
            try:
                step, loss = int(float(row["step"])), float(row["val_loss"])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(loss):
                tracker.update(step, loss)
        tracker.rises = 0

    def add(self, step: int, loss: float, best_step: int | None) -> None:
        self.rows.append({"step": step, "val_loss": f"{loss:.7f}", "best_step": best_step or ""})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())
