"""Image augmentation and loss masks for training: colour jitter on pixels, mask images as per-pixel loss weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from embed_studio.dataset.buckets import fit_to_bucket
from embed_studio.errors import CorruptImageError

_LUMA = (0.299, 0.587, 0.114)


def color_jitter(pixels: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Pixels in [-1, 1] ([B, 3, H, W]) with brightness, contrast and saturation each scaled by 1 ± strength.

    Hue is left alone on purpose: a character's colours are what an embedding learns.
    """
    if strength <= 0:
        return pixels
    factors = 1 + strength * (2 * torch.rand((3, pixels.shape[0]), generator=generator) - 1)
    brightness, contrast, saturation = (f.view(-1, 1, 1, 1).to(pixels.device) for f in factors)
    x = (pixels.float() + 1) / 2 * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    luma = torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)
    grey = (x * luma).sum(dim=1, keepdim=True)
    x = (x - grey) * saturation + grey
    return x.clamp(0, 1) * 2 - 1


def find_masks(folder: Path, images: list[Path]) -> dict[Path, Path]:
    """image -> its mask in `folder`: the image file with the same name stem (any image type)."""
    from embed_studio.dataset.folder import list_images

    by_stem = {p.stem: p for p in list_images(folder)}
    return {image: by_stem[image.stem] for image in images if image.stem in by_stem}


def mask_weight(mask: Path, image_size: tuple[int, int], bucket: tuple[int, int], latent_factor: int) -> torch.Tensor:
    """[1, h, w] loss weight from a mask image (white = learn, black = ignore), mean 1 like the alpha weight.

    The mask is stretched to its image's size first, then cropped to the bucket exactly as the image is.
    Raises CorruptImageError for an unreadable or all-black mask (that image would teach nothing).
    """
    from PIL import Image

    from embed_studio.dataset.imageio import open_image

    h, w = bucket[1] // latent_factor, bucket[0] // latent_factor
    grey = open_image(mask).convert("L")
    if grey.size != image_size:
        grey = grey.resize(image_size, Image.BILINEAR)
    grey = fit_to_bucket(grey, bucket).resize((w, h), Image.BILINEAR)
    weight = torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0).unsqueeze(0)
    mean = weight.mean()
    if mean <= 0:
        raise CorruptImageError(
            f"{mask.name}: the mask is all black, so its image would teach nothing. Paint the part to learn white."
        )
    return weight / mean
