"""Aspect-ratio buckets: the training size of each image, so mixed aspect ratios batch without cropping."""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from PIL import Image

from embed_studio.errors import UserInputError

K = TypeVar("K", bound=Hashable)

DEFAULT_AREA = 512 * 512
DEFAULT_STEP = 64


def validate_bucket_settings(width: int, height: int, step: int = DEFAULT_STEP) -> None:
    """Raise UserInputError unless the training size and the bucket step make sense together."""
    if step <= 0 or step % 8:
        raise UserInputError(f"Bucket step {step} must be a positive multiple of 8 (the VAE's latent factor); use 64.")
    for label, value in (("width", width), ("height", height)):
        if value < step or value % step:
            raise UserInputError(f"Training {label} {value} must be a multiple of {step} and at least {step}; try 512.")


def bucket_sizes(area: int = DEFAULT_AREA, step: int = DEFAULT_STEP) -> list[tuple[int, int]]:
    """Every bucket for a training area: for each width (a multiple of `step`), the tallest height that fits."""
    sizes = set()
    w = step
    while w * step <= area:
        h = (area // w) // step * step
        sizes.update({(w, h), (h, w)})  # both orientations, so portrait and landscape are treated alike
        w += step
    return sorted(sizes)


def bucket_size(width: int, height: int, area: int = DEFAULT_AREA, step: int = DEFAULT_STEP) -> tuple[int, int]:
    """The (width, height) an image of this size trains at.

    Of the buckets whose area fits `area` (sides multiples of `step`), the one whose aspect ratio is closest
    to the image's; the image is then scaled to cover it, so only the rounding remainder is cropped.
    """
    if width <= 0 or height <= 0:
        raise UserInputError(f"Image size {width}x{height} is not a real size.")
    aspect = math.log(width / height)
    # Closest aspect on a log scale (2:1 and 1:2 weigh alike); ties go to the larger area.
    return min(bucket_sizes(area, step), key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


def assign_buckets(
    sizes: Mapping[K, tuple[int, int]], area: int = DEFAULT_AREA, step: int = DEFAULT_STEP
) -> dict[tuple[int, int], list[K]]:
    """Group items by training size: {(w, h): [keys...]}, buckets sorted by size, keys in input order."""
    groups: dict[tuple[int, int], list[K]] = {}
    for key, (w, h) in sizes.items():
        groups.setdefault(bucket_size(w, h, area, step), []).append(key)
    return dict(sorted(groups.items()))


def cover_crop(size: tuple[int, int], bucket: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """How fit_to_bucket fits an image of `size` (w, h): the resized (w, h) and the crop's (left, top) in it."""
    bw, bh = bucket
    w, h = size
    scale = max(bw / w, bh / h)
    nw, nh = max(bw, round(w * scale)), max(bh, round(h * scale))
    return (nw, nh), ((nw - bw) // 2, (nh - bh) // 2)


def fit_to_bucket(image: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    """Resize to cover the bucket keeping the aspect ratio, then centre-crop the rounding remainder."""
    bw, bh = bucket
    (nw, nh), (left, top) = cover_crop(image.size, bucket)
    resized = image.resize((nw, nh), Image.BICUBIC) if (nw, nh) != image.size else image
    return resized.crop((left, top, left + bw, top + bh))


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) as displayed (EXIF rotation applied), read from the header only; None if unreadable."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)  # 5-8 are the rotations by 90 or 270 degrees
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def image_buckets(
    paths: Iterable[str | os.PathLike], area: int = DEFAULT_AREA, step: int = DEFAULT_STEP
) -> dict[tuple[int, int], list[Path]]:
    """Buckets of image files without decoding them (for showing a dataset's buckets); unreadable files are left out."""
    sizes = {}
    for p in paths:
        size = image_size(p)
        if size is not None:
            sizes[Path(p)] = size
    return assign_buckets(sizes, area, step)
