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

from embed_studio.backends.base import Backend, LatentDist, SizeCond, host_to_device
from embed_studio.dataset.buckets import bucket_size, cover_crop, fit_to_bucket
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
    weight: torch.Tensor | None = None  # [N, 1, h, w] loss weights from the alpha channel/masks (mean 1), if asked
    flipped_mean: torch.Tensor | None = None  # the mirrored images' latents (flip augmentation)
    flipped_std: torch.Tensor | None = None
    pixels: torch.Tensor | None = None  # [N, 3, H, W] uint8 on the CPU, kept only for colour jitter
    sizes: list[SizeCond] = field(default_factory=list)  # per image: SDXL's size conditioning


@dataclass
class TrainingSet:
    buckets: list[Bucket]
    latent_sampling: str
    skipped: list[str] = field(default_factory=list)  # "file: reason" for images left out
    color_jitter: float = 0.0
    encode: Callable[[torch.Tensor], LatentDist] | None = None  # the VAE, when images are re-encoded per step

    def __len__(self) -> int:
        return sum(len(b.paths) for b in self.buckets)

    def captions(self) -> list[str]:
        return [c for b in self.buckets for c in b.captions]

    def weights(self, bucket: int, indices: list[int], flips: list[bool] | None = None) -> torch.Tensor | None:
        b = self.buckets[bucket]
        if b.weight is None:
            return None
        weight = b.weight.index_select(0, host_to_device(torch.tensor(indices), b.weight.device))
        return _pick(flips, weight.flip(-1), weight)

    def size_conds(self, bucket: int, indices: list[int]) -> list[SizeCond] | None:
        sizes = self.buckets[bucket].sizes
        return [sizes[i] for i in indices] if sizes else None

    def latents(
        self,
        bucket: int,
        indices: list[int],
        generator: torch.Generator,
        flips: list[bool] | None = None,
        jitter: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Latents of the batch; `flips` picks mirrored images, `jitter` (a generator) re-encodes colour-jittered
        pixels (an image whose jittered latents are not finite keeps its cached ones)."""
        b = self.buckets[bucket]
        index = host_to_device(torch.tensor(indices), b.mean.device)
        mean = b.mean.index_select(0, index)
        std = b.std.index_select(0, index) if b.std is not None else None
        if b.flipped_mean is not None and flips is not None:
            mean = _pick(flips, b.flipped_mean.index_select(0, index), mean)
            if std is not None and b.flipped_std is not None:
                std = _pick(flips, b.flipped_std.index_select(0, index), std)
        if jitter is not None and self.encode is not None and b.pixels is not None and self.color_jitter > 0:
            from embed_studio.train.augment import color_jitter

            pixels = b.pixels.index_select(0, index.cpu()).float() / 127.5 - 1.0
            if flips is not None:
                pixels = _pick(flips, pixels.flip(-1), pixels)
            dist = self.encode(color_jitter(pixels, self.color_jitter, jitter))
            ok = (_finite(dist.mean) & _finite(dist.std)).to(mean.device).view(-1, 1, 1, 1)
            mean = torch.where(ok, dist.mean.to(mean), mean)
            if std is not None:  # "once" keeps no spread, so its jittered copies use their means
                std = torch.where(ok, dist.std.to(std), std)
        if self.latent_sampling != "random" or std is None:
            return mean
        return LatentDist(mean, std).sample(generator)


def _pick(flags: list[bool] | None, when: torch.Tensor, otherwise: torch.Tensor) -> torch.Tensor:
    if not flags or not any(flags):
        return otherwise
    chosen = torch.tensor(flags, device=otherwise.device).view(-1, *([1] * (otherwise.dim() - 1)))
    return torch.where(chosen, when, otherwise)


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


def _encode_checked(backend: Backend, pixels: torch.Tensor) -> tuple[LatentDist, torch.Tensor]:
    """The latents of `pixels` and which are finite; those that are not are retried in float32 first."""
    dist = backend.encode_images(pixels)
    ok = _finite(dist.mean) & _finite(dist.std)
    if not bool(ok.all()):
        # Half-precision VAEs overflow on some images: retry those in float32 before giving up.
        bad = [j for j in range(pixels.shape[0]) if not ok[j]]
        exact = backend.encode_images(pixels[bad], exact=True)
        exact_ok = _finite(exact.mean) & _finite(exact.std)
        for k, j in enumerate(bad):
            if exact_ok[k]:
                dist.mean[j], dist.std[j] = exact.mean[k], exact.std[k]
                ok[j] = True
    return dist, ok


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
    images_only: list[Path] | None = None,
    flip: bool = False,
    color_jitter: float = 0.0,
    mask_dir: str | Path | None = None,
) -> TrainingSet:
    """Load, bucket and VAE-encode every image once; images that cannot be read or encode to NaN are skipped.

    images_only: these images of the folder instead of all (the training or validation share). flip: mirrored
    copies are encoded too. color_jitter: the resized pixels are kept to be jittered and encoded per step.
    mask_dir: masks named like the images become loss weights (with the alpha weight, if asked, multiplied in).
    """
    from embed_studio.train.augment import find_masks, mask_weight

    paths = list_images(folder) if images_only is None else list(images_only)
    if not paths:
        raise DatasetError(f"{folder} has no images. Put .png/.jpg/.webp images (with .txt captions) in it.")
    masks = find_masks(Path(mask_dir), paths) if mask_dir else {}
    mask_weights: dict[Path, torch.Tensor] = {}
    skipped: list[str] = []
    # Each image is resized to its bucket as soon as it is read, so only training-sized copies stay in memory.
    images: dict[Path, Image.Image] = {}
    size_conds: dict[Path, SizeCond] = {}
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
        if path in masks:
            try:
                mask_weights[path] = mask_weight(masks[path], image.size, size, backend.latent_factor)
            except CorruptImageError as e:
                skipped.append(f"{path.name}: {e}")
                continue
        images[path] = fit_to_bucket(image, size)
        _, (left, top) = cover_crop(image.size, size)
        size_conds[path] = SizeCond((image.height, image.width), (top, left), (size[1], size[0]))
        groups.setdefault(size, []).append(path)
    groups = dict(sorted(groups.items()))
    buckets: list[Bucket] = []
    done = 0
    for size, members in groups.items():
        kept_paths, means, stds, flipped_means, flipped_stds = [], [], [], [], []
        for start in range(0, len(members), ENCODE_BATCH):
            chunk = members[start : start + ENCODE_BATCH]
            pixels = _to_pixels([images[p] for p in chunk])
            dist, ok = _encode_checked(backend, pixels)
            if flip:
                mirrored, mirrored_ok = _encode_checked(backend, pixels.flip(-1))
            for j, path in enumerate(chunk):
                if not ok[j]:
                    skipped.append(f"{path.name}: its latents are NaN/inf even in float32; the image was skipped")
                    continue
                kept_paths.append(path)
                means.append(dist.mean[j])
                stds.append(dist.std[j])
                if flip:  # a mirror that will not encode trains as the image itself
                    flipped_means.append(mirrored.mean[j] if mirrored_ok[j] else dist.mean[j])
                    flipped_stds.append(mirrored.std[j] if mirrored_ok[j] else dist.std[j])
            done += len(chunk)
            if on_progress:
                on_progress(len(paths) + done, len(paths) * 2, f"caching latents {size[0]}x{size[1]}")
        if not kept_paths:
            continue
        mean = torch.stack(means)
        std = torch.stack(stds)
        flipped_mean = torch.stack(flipped_means) if flip else None
        flipped_std = torch.stack(flipped_stds) if flip else None
        if latent_sampling == "once":
            # One fixed draw per image, seeded per file name so it does not depend on what else is in the folder.
            mean = _draw_once(mean, std, kept_paths, seed, "latent")
            if flip:
                flipped_mean = _draw_once(flipped_mean, flipped_std, kept_paths, seed, "latent-flipped")
        captions = [image_caption(p, caption_regex, caption_join) for p in kept_paths]
        weight = None
        if use_alpha_weight or any(p in mask_weights for p in kept_paths):
            weight = torch.stack(
                [
                    _loss_weight(p, size, backend.latent_factor, use_alpha_weight, mask_weights.get(p))
                    for p in kept_paths
                ]
            ).to(mean.device)
        random_std = latent_sampling == "random"
        pixels = None
        if color_jitter > 0:
            pixels = torch.from_numpy(np.stack([np.asarray(images[p], dtype=np.uint8) for p in kept_paths]))
            pixels = pixels.permute(0, 3, 1, 2).contiguous()
        buckets.append(
            Bucket(
                size, kept_paths, captions, mean, std if random_std else None, weight, flipped_mean,
                flipped_std if random_std else None, pixels, [size_conds[p] for p in kept_paths],
            )
        )  # fmt: skip
    if not buckets:
        raise DatasetError(f"None of the images in {folder} could be used: " + "; ".join(skipped[:5]))
    encode = backend.encode_images if color_jitter > 0 else None
    return TrainingSet(buckets, latent_sampling, skipped, color_jitter, encode)


def _draw_once(mean: torch.Tensor, std: torch.Tensor, paths: list[Path], seed: int, what: str) -> torch.Tensor:
    samples = []
    for path, m, s in zip(paths, mean, std, strict=True):
        g = torch.Generator(device=m.device).manual_seed(derive_seed(seed, what, path.name))
        samples.append(LatentDist(m, s).sample(g))
    return torch.stack(samples)


def _loss_weight(
    path: Path, size: tuple[int, int], latent_factor: int, use_alpha: bool, mask: torch.Tensor | None
) -> torch.Tensor:
    """The alpha weight, the mask weight, or their product scaled back to mean 1; ones when neither applies."""
    h, w = size[1] // latent_factor, size[0] // latent_factor
    weight = alpha_weight(path, size, latent_factor) if use_alpha else torch.ones(1, h, w)
    if mask is None:
        return weight
    product = weight * mask
    mean = product.mean()
    return product / mean if mean > 0 else mask


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
