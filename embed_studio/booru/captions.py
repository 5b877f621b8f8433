"""Write captions (sidecar, file name or kohya folder) and caption an existing folder by md5."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embed_studio.booru.post import SAMPLE_PREFIX, Booru
from embed_studio.booru.tagfilter import TagList, TagOptions, format_caption
from embed_studio.dataset.folder import booru_stem, caption_path, list_images
from embed_studio.errors import UserInputError
from embed_studio.fileio import atomic_write_bytes, atomic_write_text

MODES = ("sidecar", "filename", "kohya")
MD5_RE = re.compile(r"^[0-9a-f]{32}$")
# Characters no file system accepts in a name; tags in file names drop them.
_UNSAFE_NAME = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
MAX_NAME_BYTES = 200


@dataclass
class OutputOptions:
    """Where captions go: a .txt beside each image, the tags as a copy's file name, or a kohya
    "N_name" folder (copies with .txt sidecars) for LoRA tools."""

    mode: str = "sidecar"
    folder: Path | None = None  # filename/kohya: where the copies go; default inside the image folder
    kohya_repeats: int = 10
    kohya_name: str = "subject"
    overwrite: bool = False  # sidecar/kohya: replace an existing caption (the user may have edited it)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserInputError(f"Unknown caption output {self.mode!r}; choose one of {', '.join(MODES)}.")
        if self.mode == "kohya":
            if int(self.kohya_repeats) < 1:
                raise UserInputError("Kohya repeats must be 1 or more (the N of the N_name folder).")
            if not self.kohya_name.strip() or _UNSAFE_NAME.search(self.kohya_name):
                raise UserInputError('Give the kohya folder a name without / \\ : * ? " < > |.')

    def target_folder(self, image_folder: Path) -> Path:
        if self.folder:
            base = Path(self.folder).expanduser()
        else:
            base = image_folder / "tagged" if self.mode == "filename" else image_folder
        if self.mode == "kohya":
            return base / f"{int(self.kohya_repeats)}_{self.kohya_name.strip()}"
        return base


def write_output(image: Path, caption: str, options: OutputOptions) -> Path | None:
    """Write `caption` for `image` as options say; the written path, or None if one was kept."""
    image = Path(image)
    if options.mode == "sidecar":
        target = caption_path(image)
        if target.exists() and not options.overwrite:
            return None
        atomic_write_text(target, caption)
        return target
    folder = options.target_folder(image.parent)
    folder.mkdir(parents=True, exist_ok=True)
    if options.mode == "kohya":
        copy = folder / image.name
        if not copy.exists():
            atomic_write_bytes(copy, image.read_bytes())
        target = caption_path(copy)
        if target.exists() and not options.overwrite:
            return None
        atomic_write_text(target, caption)
        return target
    copy = folder / (tags_file_stem(caption) + image.suffix.lower())
    if copy.exists():
        return None  # the same tags for the same picture: already copied
    atomic_write_bytes(copy, image.read_bytes())
    return copy


def tags_file_stem(caption: str) -> str:
    """A caption as a file name: unsafe characters dropped, cut to what file systems accept."""
    stem = _UNSAFE_NAME.sub("", caption).strip().rstrip(". ")
    encoded = stem.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        stem = encoded[:MAX_NAME_BYTES].decode("utf-8", errors="ignore")
        stem = stem.rsplit(",", 1)[0].strip() if "," in stem else stem  # cut at a tag boundary
    return stem or "untagged"


@dataclass
class CaptionSummary:
    files: int = 0
    matched: int = 0
    written: int = 0
    kept: int = 0  # captions that already existed and were not replaced
    not_md5: list[str] = field(default_factory=list)  # names that carry no md5
    not_found: list[str] = field(default_factory=list)  # md5 names the booru does not know
    requests: int = 0

    def text(self, site: str) -> str:
        parts = [
            f"Captioned from {site}: {self.files} images, {self.matched} found by md5, {self.written} captions written"
        ]
        if self.kept:
            parts.append(f"{self.kept} existing captions kept")
        if self.not_found:
            parts.append(f"{len(self.not_found)} not on {site} (e.g. {', '.join(self.not_found[:3])})")
        if self.not_md5:
            parts.append(f"{len(self.not_md5)} without an md5 name (e.g. {', '.join(self.not_md5[:3])})")
        parts.append(f"{self.requests} requests")
        return "; ".join(parts) + "."


def caption_folder(
    folder: str | os.PathLike,
    booru: Booru,
    tag_options: TagOptions,
    output: OutputOptions,
    tag_list: TagList | None = None,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    check_cancelled: Callable[[], None] = lambda: None,
) -> CaptionSummary:
    """Caption every booru-named image of `folder` from the booru's own tags, looked up by md5
    in batches (one request per md5_batch md5s), copies and preprocessed crops included."""
    folder = Path(folder)
    images = list_images(folder)  # not recursive: tagged/ and kohya copies inside it are not re-read
    summary = CaptionSummary(files=len(images))
    by_md5: dict[str, list[Path]] = {}
    for image in images:
        stem = booru_stem(image.name).lower().removeprefix(SAMPLE_PREFIX)  # a sample has its post's tags
        if MD5_RE.match(stem):
            by_md5.setdefault(stem, []).append(image)
        else:
            summary.not_md5.append(image.name)
    md5s = sorted(by_md5)
    done = 0
    for start in range(0, len(md5s), booru.md5_batch):
        check_cancelled()
        chunk = md5s[start : start + booru.md5_batch]
        before = booru.client.requests_made
        posts = booru.lookup_md5(chunk)
        summary.requests += booru.client.requests_made - before
        for md5 in chunk:
            post = posts.get(md5)
            if post is None:
                summary.not_found.extend(p.name for p in by_md5[md5])
                continue
            # A deleted or hidden post has no file URL but still has its tags: use them.
            caption = format_caption(post, tag_options, tag_list)
            for image in by_md5[md5]:
                summary.matched += 1
                if write_output(image, caption, output) is None:
                    summary.kept += 1
                else:
                    summary.written += 1
        done += len(chunk)
        if progress:
            progress(done, len(md5s), f"looked up {done}/{len(md5s)} md5s")
    return summary
