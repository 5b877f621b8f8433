"""Find exact (md5) and near (perceptual hash) duplicate images, and move the extras to the trash."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from embed_studio.dataset.backups import check_writable
from embed_studio.dataset.folder import caption_path, list_images
from embed_studio.dataset.imageio import to_rgb
from embed_studio.dataset.preprocess import image_size
from embed_studio.dataset.trash import TrashBatch
from embed_studio.errors import CorruptImageError, UserInputError

Progress = Callable[[int, int, str], None]

MAX_COLOUR_GAP = 24.0  # mean colour difference (0-255, per channel) still counted as the same picture
_HASH_SIDE = 32  # the DCT input; the 8x8 lowest frequencies make the 64-bit hash
_POPCOUNT16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT = _dct_matrix(_HASH_SIDE)


def perceptual_hash(img: Image.Image) -> int:
    """64-bit DCT hash: the sign of the 8x8 lowest frequencies against their median.

    Survives resizing, re-encoding and small colour changes; a mirrored image is a different hash.
    """
    grey = img.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    freq = (_DCT @ pixels @ _DCT.T)[:8, :8].flatten()
    # The DC term would dominate the median. The margin keeps flat areas, whose other terms are rounding
    # noise around 0, from giving random bits (a flat image must hash the same at any size).
    margin = 1e-6 * (abs(freq[0]) + 1.0)
    bits = freq > np.median(freq[1:]) + margin
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hash_file(path: Path) -> tuple[int, tuple[float, float, float]]:
    """perceptual_hash and mean colour of an image file; JPEGs decode at reduced scale (32x32 is all it needs)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.draft("RGB", (_HASH_SIDE * 2, _HASH_SIDE * 2))
                img.seek(0)
                img.load()
                rgb = to_rgb(ImageOps.exif_transpose(img) or img)
                r, g, b = np.asarray(rgb.resize((8, 8)), dtype=np.float32).mean(axis=(0, 1)).tolist()
                return perceptual_hash(rgb), (r, g, b)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImageError(f"{path.name}: not a readable image ({e}).") from e


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def _popcount(x: np.ndarray) -> np.ndarray:
    v = x.view(np.uint16).reshape(*x.shape, 4)
    return _POPCOUNT16[v].sum(axis=-1, dtype=np.uint8)


@dataclass
class Duplicate:
    path: Path
    distance: int  # bits differing from the kept image's hash; 0 with exact=True for identical files
    exact: bool


@dataclass
class DuplicateGroup:
    keep: Path
    duplicates: list[Duplicate] = field(default_factory=list)


@dataclass
class DedupeReport:
    groups: list[DuplicateGroup]
    skipped: list[tuple[Path, str]]
    threshold: int

    @property
    def duplicate_count(self) -> int:
        return sum(len(g.duplicates) for g in self.groups)

    def to_remove(self) -> list[Path]:
        return [d.path for g in self.groups for d in g.duplicates]


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(
    folder: str | os.PathLike,
    threshold: int = 6,
    *,
    near: bool = True,
    images: list[Path] | None = None,
    progress: Progress | None = None,
) -> DedupeReport:
    """Group identical files (md5) and, with `near`, images whose hashes differ in <= `threshold` bits.

    Each group keeps its largest image (then: the one with a caption, the bigger file, the first name).
    """
    if not 0 <= threshold <= 32:
        raise UserInputError(
            f"Threshold {threshold}: use 0 (identical looking) to 32; 4-10 finds re-encodes and resizes."
        )
    paths = list(images) if images is not None else list_images(folder)
    md5s, hashes, colours, sizes, ok, skipped = [], [], [], [], [], []
    for n, p in enumerate(paths):
        if progress:
            progress(n, len(paths), p.name)
        try:
            md5 = file_md5(p)
            h, colour = hash_file(p) if near else (0, (0.0, 0.0, 0.0))
            w, hh = image_size(p)
        except (CorruptImageError, OSError) as e:
            skipped.append((p, str(e)))
            continue
        ok.append(p)
        md5s.append(md5)
        hashes.append(h)
        colours.append(colour)
        sizes.append(w * hh)
    if progress:
        progress(len(paths), len(paths), "comparing")
    uf = _UnionFind(len(ok))
    first_of: dict[str, int] = {}
    for i, m in enumerate(md5s):
        if m in first_of:
            uf.union(first_of[m], i)
        else:
            first_of[m] = i
    if near and len(ok) > 1:
        arr = np.array(hashes, dtype=np.uint64)
        # The hash sees structure, not colour: flat or recoloured images share a hash. Near
        # duplicates also have about the same mean colour, which re-encoding and resizing keep.
        col = np.array(colours, dtype=np.float32)
        block = 256  # rows compared against all at once: bounded memory (~40 MB) on 10k-image folders
        for start in range(0, len(arr), block):
            rows = arr[start : start + block]
            if progress:
                progress(start, len(arr), "comparing")
            # Only pairs (i, j > i): earlier rows were already compared with these.
            rr, cc = np.nonzero(_popcount(rows[:, None] ^ arr[None, start:]) <= threshold)
            rr, cc = rr + start, cc + start
            keep = (cc > rr) & (np.abs(col[rr] - col[cc]).max(axis=-1) <= MAX_COLOUR_GAP)
            for i, j in zip(rr[keep].tolist(), cc[keep].tolist(), strict=True):
                uf.union(i, j)
    members: dict[int, list[int]] = {}
    for i in range(len(ok)):
        members.setdefault(uf.find(i), []).append(i)
    groups = []
    for idx in members.values():
        if len(idx) < 2:
            continue
        keep = max(idx, key=lambda i: (sizes[i], caption_path(ok[i]).exists(), ok[i].stat().st_size, -i))
        dups = [Duplicate(ok[i], hamming(hashes[i], hashes[keep]), md5s[i] == md5s[keep]) for i in idx if i != keep]
        groups.append(DuplicateGroup(ok[keep], sorted(dups, key=lambda d: d.path.name)))
    groups.sort(key=lambda g: g.keep.name.lower())
    return DedupeReport(groups, skipped, threshold)


def remove_duplicates(folder: str | os.PathLike, report: DedupeReport | list[Path]) -> TrashBatch:
    """Move the duplicates (and their captions) to the dataset's trash; restore_trash() undoes it."""
    folder = Path(folder)
    paths = report.to_remove() if isinstance(report, DedupeReport) else list(report)
    check_writable(paths)
    gone = set(paths)
    # "a.png" and "a.jpg" share "a.txt": keep a caption that an image staying behind still uses.
    kept_captions = {caption_path(p) for p in list_images(folder) if p not in gone}
    with TrashBatch(folder, "dedupe", f"{len(paths)} duplicates") as batch:
        for p in paths:
            if not p.exists():
                continue
            batch.move(p)
            if caption_path(p).exists() and caption_path(p) not in kept_captions:
                batch.move(caption_path(p))
    return batch
