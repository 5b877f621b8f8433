"""A dataset at a glance: image count, sizes, aspect ratios, training buckets, missing captions."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embed_studio.dataset.buckets import DEFAULT_STEP, assign_buckets
from embed_studio.dataset.folder import caption_path, list_images
from embed_studio.dataset.preprocess import image_size
from embed_studio.errors import CorruptImageError

# Aspect-ratio bins from tall to wide; the same long/short ratio falls in mirrored bins.
_STEPS = [(1.02, "square"), (1.25, "5:4"), (1.5, "3:2"), (2.0, "2:1")]
ASPECT_LABELS = [
    "1:2 or taller", "2:3 - 1:2", "4:5 - 2:3", "up to 4:5 tall", "square",
    "up to 5:4 wide", "5:4 - 3:2", "3:2 - 2:1", "2:1 or wider",
]  # fmt: skip


def aspect_bin(width: int, height: int) -> str:
    """The histogram bin of an image; exactly 2:1 counts as "2:1 or wider" (what `split` cuts)."""
    ratio = max(width, height) / min(width, height)
    level = next((n for n, (limit, _) in enumerate(_STEPS) if ratio < limit), len(_STEPS))
    if level == 0:
        return "square"
    return ASPECT_LABELS[4 + level] if width > height else ASPECT_LABELS[4 - level]


@dataclass
class DatasetSummary:
    folder: Path
    image_count: int
    formats: dict[str, int]
    min_size: tuple[int, int] | None  # smallest by area
    max_size: tuple[int, int] | None
    median_side: tuple[float, float] | None  # median width, median height
    aspect_histogram: list[tuple[str, int]]
    train_size: tuple[int, int]
    buckets: list[tuple[tuple[int, int], int]]  # (bucket, images), as the trainer will batch them
    smaller_than_training: list[Path] = field(default_factory=list)  # would be upscaled
    no_caption: list[Path] = field(default_factory=list)
    empty_caption: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def as_markdown(self, max_names: int = 10) -> str:
        def names(paths: list[Path]) -> str:
            shown = ", ".join(f"`{p.name}`" for p in paths[:max_names])
            return shown + (f" and {len(paths) - max_names} more" if len(paths) > max_names else "")

        lines = [f"**{self.image_count} images** in `{self.folder}`"]
        if self.formats:
            lines.append("Formats: " + ", ".join(f"{k} {v}" for k, v in sorted(self.formats.items())))
        if self.min_size and self.max_size and self.median_side:
            lines.append(
                f"Sizes: smallest {self.min_size[0]}x{self.min_size[1]}, largest {self.max_size[0]}x{self.max_size[1]}, "
                f"median {self.median_side[0]:.0f}x{self.median_side[1]:.0f}"
            )
        lines.append("\n| aspect ratio | images |\n|---|---|")
        top = max((n for _, n in self.aspect_histogram), default=0) or 1
        lines += [f"| {label} | {'█' * max(1, round(30 * n / top))} {n} |" for label, n in self.aspect_histogram if n]
        w, h = self.train_size
        lines.append(
            f"\n**Buckets for a {w}x{h} training area** ({len(self.buckets)} used)\n\n| bucket | images |\n|---|---|"
        )
        lines += [f"| {bw}x{bh} | {n} |" for (bw, bh), n in self.buckets]
        if self.smaller_than_training:
            lines.append(
                f"\n{len(self.smaller_than_training)} smaller than the training area (upscaled): {names(self.smaller_than_training)}"
            )
        if self.no_caption:
            lines.append(f"\n**{len(self.no_caption)} without a caption file**: {names(self.no_caption)}")
        if self.empty_caption:
            lines.append(f"\n**{len(self.empty_caption)} with an empty caption**: {names(self.empty_caption)}")
        if self.unreadable:
            lines.append(
                f"\n**{len(self.unreadable)} unreadable** (delete or re-download): {names([p for p, _ in self.unreadable])}"
            )
        return "\n".join(lines)


def summarize(
    folder: str | os.PathLike,
    train_size: tuple[int, int] = (512, 512),
    *,
    step: int = DEFAULT_STEP,
    progress: Callable[[int, int, str], None] | None = None,
) -> DatasetSummary:
    """Read every image's header (not its pixels) and caption file; fast on thousands of images."""
    folder = Path(folder)
    images = list_images(folder)
    sizes: dict[Path, tuple[int, int]] = {}
    formats: Counter[str] = Counter()
    out = DatasetSummary(folder, len(images), {}, None, None, None, [], train_size, [])
    for n, p in enumerate(images):
        if progress and n % 100 == 0:
            progress(n, len(images), p.name)
        formats[p.suffix.lower().lstrip(".")] += 1
        try:
            sizes[p] = image_size(p)
        except CorruptImageError as e:
            out.unreadable.append((p, str(e)))
        try:
            text = caption_path(p).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            out.no_caption.append(p)
        else:
            if not text.strip(" \t\r\n,"):
                out.empty_caption.append(p)
    out.formats = dict(formats)
    if sizes:
        dims = list(sizes.values())
        out.min_size = min(dims, key=lambda s: s[0] * s[1])
        out.max_size = max(dims, key=lambda s: s[0] * s[1])
        out.median_side = (statistics.median(w for w, _ in dims), statistics.median(h for _, h in dims))
        hist = Counter(aspect_bin(w, h) for w, h in dims)
        out.aspect_histogram = [(label, hist[label]) for label in ASPECT_LABELS]
        area = train_size[0] * train_size[1]
        out.buckets = [(b, len(keys)) for b, keys in assign_buckets(sizes, area, step).items()]
        out.smaller_than_training = [p for p, (w, h) in sizes.items() if w * h < area]
    return out
