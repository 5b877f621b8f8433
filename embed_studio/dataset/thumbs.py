"""Small cached thumbnails for the gallery, made only for the page being shown."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageOps

from embed_studio.dataset.imageio import to_rgb
from embed_studio.fileio import WriteError, atomic_write_bytes


def thumb_dir() -> Path:
    # Outside the dataset: opening a read-only dataset must work, and thumbnails are not user data.
    return Path(tempfile.gettempdir()) / "embed-studio-thumbs"


def thumbnail(path: str | os.PathLike, size: int = 256) -> Path:
    """A JPEG of at most size x size for `path`, cached by path, modification time and size.

    Falls back to the image itself when it cannot be decoded or the cache cannot be written,
    so the gallery still shows something (the browser's broken-image icon for corrupt files).
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return path
    key = hashlib.sha1(f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{size}".encode()).hexdigest()
    out = thumb_dir() / f"{key}.jpg"
    if out.exists():
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.draft("RGB", (size, size))  # JPEG decodes at a fraction of the size: fast on huge photos
                img.seek(0)
                img.thumbnail((size, size))
                rgb = to_rgb(ImageOps.exif_transpose(img) or img, (128, 128, 128))
        out.parent.mkdir(parents=True, exist_ok=True)
        buf = BytesIO()
        rgb.save(buf, "JPEG", quality=85)
        atomic_write_bytes(out, buf.getvalue())
    except (OSError, SyntaxError, ValueError, WriteError, Image.DecompressionBombError):
        return path
    return out
