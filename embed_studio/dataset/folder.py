"""Find the images of a dataset folder and read/write their caption sidecars."""

from __future__ import annotations

import os
import re
from pathlib import Path

from embed_studio.dataset.imageio import is_image_file
from embed_studio.errors import DatasetError
from embed_studio.fileio import atomic_write_text

CAPTION_SUFFIX = ".txt"

# "name (1).jpg" browser copies, and the WebUI preprocessor's "00001-0 name.jpg" / "00001-0-name.jpg".
_COPY_SUFFIX = re.compile(r"\s*\(\d+\)$")
_PREPROCESS_PREFIX = re.compile(r"^\d{5}-\d+[ -]")


def require_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise DatasetError(f"Dataset folder {folder} does not exist. Pick an existing folder of images.")
    if not folder.is_dir():
        raise DatasetError(f"{folder} is a file, not a folder. Pick the folder that holds the images.")
    return folder


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (sorted; hidden files and our own backup folders skipped)."""
    folder = require_folder(folder)
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    images = [
        p
        for p in pattern
        if p.is_file() and is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(images, key=lambda p: str(p).lower())


def caption_path(image: str | os.PathLike) -> Path:
    return Path(image).with_suffix(CAPTION_SUFFIX)


def read_caption(image: str | os.PathLike) -> str | None:
    """The caption sidecar's text (stripped), or None when the image has no sidecar."""
    path = caption_path(image)
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None


def write_caption(image: str | os.PathLike, text: str) -> None:
    atomic_write_text(caption_path(image), text)


def split_tags(text: str | None, separator: str = ",") -> list[str]:
    """Tags of a caption: split on the separator, stripped, empties dropped, order kept."""
    if not text:
        return []
    return [t.strip() for t in text.split(separator) if t.strip()]


def join_tags(tags: list[str], separator: str = ", ") -> str:
    return separator.join(tags)


def booru_stem(filename: str | os.PathLike) -> str:
    """The original booru name (usually the md5) of a file that may be a copy or preprocessed."""
    stem = Path(filename).stem
    stem = _PREPROCESS_PREFIX.sub("", stem)
    return _COPY_SUFFIX.sub("", stem).strip()
