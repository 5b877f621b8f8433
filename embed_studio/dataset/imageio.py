"""Open any image Pillow can read and turn it into plain RGB, with a clear error when it can't."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps

from embed_studio.errors import CorruptImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif"})

# Booru originals can be huge; Pillow's bomb guard would refuse some legitimate ones.
Image.MAX_IMAGE_PIXELS = 300_000_000


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def open_image(path: str | os.PathLike, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open and fully decode an image (first frame), applying its EXIF orientation.

    `draft_size` lets JPEGs decode at a reduced scale that is still at least that size
    (much faster for big originals that are only going to be shrunk).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd palettes / EXIF; not the user's problem
            with Image.open(path) as img:
                img.seek(0)
                if draft_size and img.format == "JPEG":
                    img.draft(None, draft_size)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return img.copy()
    except FileNotFoundError as e:
        raise CorruptImageError(f"{path}: file not found.") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImageError(
            f"{path.name}: not a readable image ({e}). Re-download or delete it; it was skipped."
        ) from e


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB version of any mode: transparency composited on `background`, 16-bit scaled to 8-bit."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit integer greyscale: scale to 0..255 instead of clipping (Pillow clips).
        img = (
            img.point(lambda v: v / 256).convert("L")
            if img.mode != "I" or img.getextrema()[1] > 255
            else img.convert("L")
        )
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if img.mode == "CMYK":
        return img.convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def load_rgb(path: str | os.PathLike, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    return to_rgb(open_image(path), background)
