"""The training set: images bucketed by aspect ratio, latents cached once, and a seeded batch plan."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from embed_studio.backends.base import Backend, LatentDist, host_to_device
from embed_studio.dataset.buckets import bucket_size, fit_to_bucket
from embed_studio.dataset.folder import list_images
from embed_studio.dataset.imageio import load_rgb
from embed_studio.errors import CorruptImageError, DatasetError
from embed_studio.train.prompts import image_caption

ENCODE_BATCH = 4  # images per VAE call while caching


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the run seed and counters: every step gets its own reproducible random state."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class Bucket:
    size: tuple[int, int]  # (width, height) in pixels
    paths: list[Path]
    captions: list[str]
    mean: torch.Tensor  # [N, C, h, w] scaled latents on the device
    std: torch.Tensor | None  # only kept for "random" latent sampling
    weight: torch.Tensor | None = None  # [N, 1, h, w] loss weights from the alpha channel (mean 1), if asked


@dataclass
class TrainingSet:
    buckets: list[Bucket]
    latent_sampling: str
    skipped: list[str] = field(default_factory=list)  # "file: reason" for images left out

    def __len__(self) -> int:
        return sum(len(b.paths) for b in self.buckets)

    def captions(self) -> list[str]:
        return [c for b in self.buckets for c in b.captions]

    def weights(self, bucket: int, indices: list[int]) -> torch.Tensor | None:
        b = self.buckets[bucket]
        if b.weight is None:
            return None
        return b.weight.index_select(0, host_to_device(torch.tensor(indices), b.weight.device))

    def latents(self, bucket: int, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        b = self.buckets[bucket]
        index = host_to_device(torch.tensor(indices), b.mean.device)
        mean = b.mean.index_select(0, index)
        if self.latent_sampling != "random":
            return mean
        return LatentDist(mean, b.std.index_select(0, index)).sample(generator)


def _to_pixels(images: list) -> torch.Tensor:
    array = np.stack([np.asarray(img, dtype=np.float32) for img in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def alpha_weight(path: Path, bucket: tuple[int, int], latent_factor: int) -> torch.Tensor:
    """[1, h, w] loss weight from an image's alpha channel (min 0, mean 1, as the WebUI does); ones without alpha."""
    from embed_studio.dataset.imageio import open_image

    h, w = bucket[1] // latent_factor, bucket[0] // latent_factor
    image = open_image(path)
    if "A" not in image.getbands():
        return torch.ones(1, h, w)
    alpha = fit_to_bucket(image.getchannel("A"), bucket).resize((w, h))
    weight = torch.from_numpy(np.asarray(alpha, dtype=np.float32)).unsqueeze(0)
    weight = weight - weight.min()
    mean = weight.mean()
    return weight / mean if mean > 0 else torch.ones(1, h, w)


def _finite(t: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)


def prepare_training_set(
    backend: Backend,
    folder: str | Path,
    *,
    width: int,
    height: int,
    variable_size: bool,
    bucket_step: int,
    latent_sampling: str,
    seed: int,
    caption_regex: str | None = None,
    caption_join: str = " ",
    use_alpha_weight: bool = False,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> TrainingSet:
    """Load, bucket and VAE-encode every image once; images that cannot be read or encode to NaN are skipped."""
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"{folder} has no images. Put .png/.jpg/.webp images (with .txt captions) in it.")
    skipped: list[str] = []
    # Each image is resized to its bucket as soon as it is read, so only training-sized copies stay in memory.
    images: dict[Path, Image.Image] = {}
    groups: dict[tuple[int, int], list[Path]] = {}
    area = width * height
    for i, path in enumerate(paths):
        try:
            image = load_rgb(path)
        except CorruptImageError as e:
            skipped.append(f"{path.name}: {e}")
            continue
        finally:
            if on_progress:
                on_progress(i + 1, len(paths) * 2, f"reading {path.name}")
        size = bucket_size(*image.size, area, bucket_step) if variable_size else (width, height)
        images[path] = fit_to_bucket(image, size)
        groups.setdefault(size, []).append(path)
    groups = dict(sorted(groups.items()))
    buckets: list[Bucket] = []
    done = 0
    for size, members in groups.items():
        kept_paths, means, stds = [], [], []
        for start in range(0, len(members), ENCODE_BATCH):
            chunk = members[start : start + ENCODE_BATCH]
            pixels = _to_pixels([images[p] for p in chunk])
            dist = backend.encode_images(pixels)
            ok = _finite(dist.mean) & _finite(dist.std)
            if not bool(ok.all()):
                # Half-precision VAEs overflow on some images: retry those in float32 before giving up.
                bad = [j for j in range(len(chunk)) if not ok[j]]
                exact = backend.encode_images(pixels[bad], exact=True)
                exact_ok = _finite(exact.mean) & _finite(exact.std)
                for k, j in enumerate(bad):
                    if exact_ok[k]:
                        dist.mean[j], dist.std[j] = exact.mean[k], exact.std[k]
                        ok[j] = True
            for j, path in enumerate(chunk):
                if not ok[j]:
                    skipped.append(f"{path.name}: its latents are NaN/inf even in float32; the image was skipped")
                    continue
                kept_paths.append(path)
                means.append(dist.mean[j])
                stds.append(dist.std[j])
            done += len(chunk)
            if on_progress:
                on_progress(len(paths) + done, len(paths) * 2, f"caching latents {size[0]}x{size[1]}")
        if not kept_paths:
            continue
        mean = torch.stack(means)
        std = torch.stack(stds)
        if latent_sampling == "once":
            # One fixed draw per image, seeded per file name so it does not depend on what else is in the folder.
            samples = []
            for path, m, s in zip(kept_paths, mean, std, strict=True):
                g = torch.Generator(device=m.device).manual_seed(derive_seed(seed, "latent", path.name))
                samples.append(LatentDist(m, s).sample(g))
            mean = torch.stack(samples)
        captions = [image_caption(p, caption_regex, caption_join) for p in kept_paths]
        weight = None
        if use_alpha_weight:
            weight = torch.stack([alpha_weight(p, size, backend.latent_factor) for p in kept_paths]).to(mean.device)
        buckets.append(Bucket(size, kept_paths, captions, mean, std if latent_sampling == "random" else None, weight))
    if not buckets:
        raise DatasetError(f"None of the images in {folder} could be used: " + "; ".join(skipped[:5]))
    return TrainingSet(buckets, latent_sampling, skipped)


class BatchPlan:
    """Which images make up micro-batch number `position`: a pure function of (seed, position).

    Each epoch shuffles every bucket's images (repeated `repeats` times), cuts them into batches of one bucket
    each (a short last batch is topped up from the same bucket), and shuffles the batch order.
    """

    def __init__(self, training_set: TrainingSet, batch_size: int, repeats: int, seed: int):
        self.sizes = [len(b.paths) for b in training_set.buckets]
        self.batch_size = batch_size
        self.repeats = repeats
        self.seed = seed
        self.batches_per_epoch = sum(-(-n * repeats // batch_size) for n in self.sizes)
        self._epoch: int | None = None
        self._batches: list[tuple[int, list[int]]] = []

    def _make_epoch(self, epoch: int) -> list[tuple[int, list[int]]]:
        rng = random.Random(derive_seed(self.seed, "epoch", epoch))
        batches = []
        for bucket, n in enumerate(self.sizes):
            items = list(range(n)) * self.repeats
            rng.shuffle(items)
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                if len(batch) < self.batch_size:
                    batch += rng.choices(range(n), k=self.batch_size - len(batch))
                batches.append((bucket, batch))
        rng.shuffle(batches)
        return batches

    def epoch_of(self, position: int) -> int:
        return position // self.batches_per_epoch

    def batch(self, position: int) -> tuple[int, list[int]]:
        epoch = self.epoch_of(position)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self._make_epoch(epoch)
        return self._batches[position % self.batches_per_epoch]
