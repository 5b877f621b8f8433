"""Image preparation for a dataset: downscale, convert to RGB, flip, split; each restorable from the trash."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageOps

from embed_studio.dataset.backups import check_writable
from embed_studio.dataset.captions import filename_to_tags
from embed_studio.dataset.folder import caption_path, list_images, read_caption
from embed_studio.dataset.imageio import open_image, to_rgb
from embed_studio.dataset.trash import TrashBatch
from embed_studio.errors import CorruptImageError, UserInputError
from embed_studio.fileio import atomic_write_bytes, atomic_write_text, unique_path

Progress = Callable[[int, int, str], None]  # done, total, current file name
RGB = tuple[int, int, int]

# Formats a trainer reads without surprises; anything else (GIF, WebP, TIFF, BMP) is converted.
_PLAIN_SUFFIXES = {".png", ".jpg", ".jpeg"}
_SAVE_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}


@dataclass
class OpResult:
    """What an operation did (or, dry_run, would do): (file, what) pairs, and its trash batch."""

    kind: str
    items: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    batch: TrashBatch | None = None
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would change" if self.dry_run else "changed"
        text = f"{self.kind}: {verb} {len(self.items)} image(s)"
        if self.skipped:
            text += f", skipped {len(self.skipped)}"
        if self.batch and self.batch.name:
            text += f" (originals kept in trash {self.batch.name}; Restore brings them back)"
        return text


def parse_color(text: str | RGB) -> RGB:
    """'#ffffff', 'ffffff', 'white'-free RGB parsing: a hex colour or an (r, g, b) tuple."""
    if isinstance(text, tuple):
        return text
    value = text.strip().lstrip("#")
    if value.startswith("rgb"):
        nums = value[value.find("(") + 1 : value.find(")")].split(",")
        try:
            return tuple(int(float(n)) for n in nums[:3])  # type: ignore[return-value]
        except ValueError:
            pass
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    try:
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
    except ValueError:
        raise UserInputError(f"Colour {text!r}: use a hex colour like #ffffff.") from None


def image_size(path: Path) -> tuple[int, int]:
    """Width and height from the header only (fast), after EXIF rotation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                w, h = img.size
                orientation = img.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(f"{path.name}: not a readable image ({e}).") from e
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def encode(img: Image.Image, suffix: str) -> bytes:
    fmt = _SAVE_FORMAT.get(suffix.lower(), "PNG")
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = to_rgb(img)
    buf = BytesIO()
    if fmt in ("JPEG", "WEBP"):
        img.save(buf, fmt, quality=95)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def _caption_for_copy(image: Path) -> str | None:
    """The caption a derived copy should carry: the sidecar's, or the tags in the file name."""
    text = read_caption(image)
    if text is None:
        tags = filename_to_tags(image)
        text = ", ".join(tags) if tags else None
    return text


def _copy_caption(source: Path, target: Path, batch: TrashBatch) -> None:
    """Give a renamed output ("a-1.png" for "a.gif") the caption of its source, when names differ."""
    src, dest = caption_path(source), caption_path(target)
    if src != dest and src.exists() and not dest.exists():
        atomic_write_text(dest, src.read_text(encoding="utf-8", errors="replace"))
        batch.add_created(dest)


def _targets(folder: Path, images: list[Path] | None) -> list[Path]:
    return list(images) if images is not None else list_images(folder)


def _loop(paths: list[Path], progress: Progress | None):
    for n, p in enumerate(paths):
        if progress:
            progress(n, len(paths), p.name)
        yield p
    if progress:
        progress(len(paths), len(paths), "")


def downscale(
    folder: str | os.PathLike,
    max_side: int,
    *,
    images: list[Path] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> OpResult:
    """Resize images whose longer side exceeds `max_side`, keeping aspect ratio, in place.

    The original goes to the trash; the caption stays (same name).
    """
    if max_side < 64:
        raise UserInputError(f"Max side {max_side}: use at least 64 pixels (e.g. 1024, or the training area).")
    folder = Path(folder)
    result = OpResult("downscale", dry_run=dry_run)
    todo = []
    for p in _targets(folder, images):
        try:
            w, h = image_size(p)
        except CorruptImageError as e:
            result.skipped.append((p, str(e)))
            continue
        if max(w, h) > max_side:
            scale = max_side / max(w, h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            todo.append((p, size))
            result.items.append((p, f"{w}x{h} -> {size[0]}x{size[1]}"))
    if dry_run or not todo:
        return result
    check_writable([p for p, _ in todo])
    with TrashBatch(folder, "downscale", f"downscale to {max_side}px") as batch:
        result.batch = batch
        sizes = dict(todo)
        for p in _loop([p for p, _ in todo], progress):
            try:
                img = open_image(p)
            except CorruptImageError as e:
                result.skipped.append((p, str(e)))
                continue
            if img.mode not in ("RGB", "RGBA", "L", "LA"):
                # Palette/1-bit would resize with nearest-neighbour, 16-bit not at all.
                img = img.convert("RGBA") if img.mode in ("P", "PA") and "transparency" in img.info else to_rgb(img)
            # GIF/TIFF are not written back as such: the smaller copy is a PNG (caption name unchanged).
            target = p if p.suffix.lower() in _SAVE_FORMAT else p.with_suffix(".png")
            if target != p and target.exists():
                target = unique_path(target)
            data = encode(img.resize(sizes[p], Image.LANCZOS), target.suffix)
            batch.move(p)
            atomic_write_bytes(target, data)
            batch.add_created(target)
            _copy_caption(p, target, batch)
    return result


def needs_conversion(path: Path) -> str | None:
    """Why `path` should be converted to plain RGB (format or mode), or None."""
    try:
        with Image.open(path) as img:
            mode, fmt = img.mode, img.format
            animated = getattr(img, "is_animated", False)
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(f"{path.name}: not a readable image ({e}).") from e
    if path.suffix.lower() not in _PLAIN_SUFFIXES:
        return f"{fmt or path.suffix} file" + (" (animated: first frame)" if animated else "")
    if mode != "RGB":
        return {"CMYK": "CMYK", "P": "palette", "RGBA": "transparency", "LA": "transparency", "L": "greyscale"}.get(
            mode, f"{mode} mode"
        )
    return None


def convert(
    folder: str | os.PathLike,
    fmt: str = "png",
    *,
    background: str | RGB = (255, 255, 255),
    images: list[Path] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> OpResult:
    """Convert GIF/WebP/TIFF/BMP, CMYK, 16-bit, palette and transparent images to RGB PNG or JPEG.

    Transparency is flattened onto `background`. "a.webp" becomes "a.png" and keeps "a.txt".
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in ("png", "jpg", "jpeg"):
        raise UserInputError(f"Format {fmt!r}: use png or jpg.")
    suffix = ".png" if fmt == "png" else ".jpg"
    bg = parse_color(background)
    folder = Path(folder)
    result = OpResult("convert", dry_run=dry_run)
    todo = []
    for p in _targets(folder, images):
        try:
            why = needs_conversion(p)
        except CorruptImageError as e:
            result.skipped.append((p, str(e)))
            continue
        if why:
            todo.append(p)
            result.items.append((p, why))
    if dry_run or not todo:
        return result
    check_writable(todo)
    with TrashBatch(folder, "convert", f"convert to {fmt.upper()}") as batch:
        result.batch = batch
        for p in _loop(todo, progress):
            try:
                img = to_rgb(open_image(p), bg)
            except CorruptImageError as e:
                result.skipped.append((p, str(e)))
                continue
            same_kind = p.suffix.lower() in ((".jpg", ".jpeg") if suffix == ".jpg" else (".png",))
            target = p if same_kind else p.with_suffix(suffix)
            if target != p and target.exists():
                # "a.gif" beside an unrelated "a.png": the new file gets a free name and its own caption.
                target = unique_path(target)
            data = encode(img, target.suffix)
            batch.move(p)
            atomic_write_bytes(target, data)
            batch.add_created(target)
            _copy_caption(p, target, batch)
    return result


FLIP_SUFFIX = "-flipped"


def flip(
    folder: str | os.PathLike,
    *,
    images: list[Path] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> OpResult:
    """Add a mirrored copy "<name>-flipped.<ext>" of each image, with its caption copied."""
    folder = Path(folder)
    result = OpResult("flip", dry_run=dry_run)
    todo = []
    for p in _targets(folder, images):
        if p.stem.endswith(FLIP_SUFFIX):
            continue
        out = p.with_name(f"{p.stem}{FLIP_SUFFIX}{p.suffix if p.suffix.lower() in _PLAIN_SUFFIXES else '.png'}")
        if out.exists():
            result.skipped.append((p, f"{out.name} exists"))
            continue
        todo.append((p, out))
        result.items.append((p, out.name))
    if dry_run or not todo:
        return result
    check_writable([out for _, out in todo])
    with TrashBatch(folder, "flip", "flipped copies") as batch:
        result.batch = batch
        outs = dict(todo)
        for p in _loop([p for p, _ in todo], progress):
            try:
                img = open_image(p)
            except CorruptImageError as e:
                result.skipped.append((p, str(e)))
                continue
            out = outs[p]
            atomic_write_bytes(out, encode(ImageOps.mirror(img), out.suffix))
            batch.add_created(out)
            caption = _caption_for_copy(p)
            if caption is not None:
                atomic_write_text(caption_path(out), caption)
                batch.add_created(caption_path(out))
    return result


def split_boxes(
    width: int, height: int, part_ratio: float = 1.0, overlap: float = 0.2
) -> list[tuple[int, int, int, int]]:
    """Crop boxes cutting a long image into overlapping parts of about `part_ratio` (long/short side)."""
    if part_ratio < 1 or not 0 <= overlap < 0.9:
        raise UserInputError("Part ratio must be at least 1 and overlap between 0 and 0.9 (e.g. 1.0 and 0.2).")
    long_side, short_side = max(width, height), min(width, height)
    part = min(long_side, round(short_side * part_ratio))
    if part >= long_side:
        return [(0, 0, width, height)]
    step = part * (1 - overlap)
    n = max(2, math.ceil((long_side - part) / step) + 1)
    starts = [round(i * (long_side - part) / (n - 1)) for i in range(n)]
    if width >= height:
        return [(s, 0, s + part, height) for s in starts]
    return [(0, s, width, s + part) for s in starts]


def split(
    folder: str | os.PathLike,
    *,
    min_ratio: float = 2.0,
    part_ratio: float = 1.0,
    overlap: float = 0.2,
    images: list[Path] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> OpResult:
    """Split images longer than `min_ratio` (long/short side) into overlapping parts "<name>-partN".

    Each part gets the caption; the original and its caption go to the trash.
    """
    if min_ratio < 1:
        raise UserInputError(f"Minimum ratio {min_ratio}: use 1.5 or more (2 = twice as long as wide).")
    folder = Path(folder)
    result = OpResult("split", dry_run=dry_run)
    todo = []
    for p in _targets(folder, images):
        try:
            w, h = image_size(p)
        except CorruptImageError as e:
            result.skipped.append((p, str(e)))
            continue
        if max(w, h) / min(w, h) >= min_ratio:
            boxes = split_boxes(w, h, part_ratio, overlap)
            if len(boxes) > 1:
                todo.append((p, boxes))
                result.items.append((p, f"{w}x{h} -> {len(boxes)} parts"))
    if dry_run or not todo:
        return result
    check_writable([p for p, _ in todo] + [caption_path(p) for p, _ in todo])
    with TrashBatch(folder, "split", "split long images") as batch:
        result.batch = batch
        boxes_of = dict(todo)
        for p in _loop([p for p, _ in todo], progress):
            try:
                img = open_image(p)
            except CorruptImageError as e:
                result.skipped.append((p, str(e)))
                continue
            caption = _caption_for_copy(p)
            suffix = p.suffix if p.suffix.lower() in _PLAIN_SUFFIXES else ".png"
            for n, box in enumerate(boxes_of[p], 1):
                out = unique_path(p.with_name(f"{p.stem}-part{n}{suffix}"))
                atomic_write_bytes(out, encode(img.crop(box), suffix))
                batch.add_created(out)
                if caption is not None:
                    atomic_write_text(caption_path(out), caption)
                    batch.add_created(caption_path(out))
            batch.move(p)
            if caption_path(p).exists():
                batch.move(caption_path(p))
    return result
