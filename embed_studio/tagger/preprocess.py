"""Images as WD taggers expect them: on white, padded square, resized, BGR float32 0..255."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from embed_studio.dataset.imageio import open_image, to_rgb

WHITE = (255, 255, 255)


def prepare_image(img: Image.Image, height: int, width: int | None = None) -> np.ndarray:
    """An HWC float32 BGR array of the model's input size from any Pillow image."""
    width = width or height
    rgb = to_rgb(img, WHITE)
    w, h = rgb.size
    side = max(w, h)
    if (w, h) != (side, side):
        # Centre on a white square first so the resize never distorts the aspect ratio.
        square = Image.new("RGB", (side, side), WHITE)
        square.paste(rgb, ((side - w) // 2, (side - h) // 2))
        rgb = square
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    # The WD models were trained on OpenCV-loaded (BGR) pixels in 0..255.
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.float32)[:, :, ::-1])


def load_for_model(path: str | os.PathLike, height: int, width: int | None = None) -> np.ndarray:
    """Decode `path` (raises CorruptImageError) and prepare it for a model of this input size."""
    width = width or height
    return prepare_image(open_image(path, draft_size=(width, height)), height, width)
