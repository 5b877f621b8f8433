"""The in-memory caption model of a dataset: per-image tags, a tag index, batch edits with undo/redo, save."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from embed_studio.dataset.backups import BackupInfo, caption_writer, check_writable, create_backup, put_back
from embed_studio.dataset.folder import (
    CAPTION_SUFFIX,
    booru_stem,
    caption_path,
    list_images,
    require_folder,
    split_tags,
)
from embed_studio.errors import DatasetError, UserInputError
from embed_studio.fileio import WriteError, atomic_write_text
from embed_studio.tagspell import CANONICAL, Spelling, canonical, spell, split_weight, tag_key, unique

Tags = tuple[str, ...]
FileStamp = tuple[int, int, int]  # a caption file's (mtime_ns, inode, size) when read

# Booru downloads named by md5 or post id carry no tags in their names.
_NOT_TAGS = re.compile(r"[0-9a-fA-F]{32}|\d+")

# Tags on most images of any single-character dataset that say nothing about the character:
# shown apart from the candidates so the user does not prune composition by mistake.
GENERIC_TAGS = frozenset(
    {
        "1girl", "1boy", "solo", "solo focus", "female", "male", "anthro", "feral", "looking at viewer",
        "simple background", "white background", "transparent background", "standing", "smile",
        "open mouth", "closed mouth", "full body", "upper body", "cowboy shot", "portrait", "monochrome",
        "greyscale", "highres", "absurdres", "hi res", "absurd res", "blush", "text", "signature",
        "english text", "dialogue", "speech bubble", "safe", "questionable", "explicit", "general",
        "sensitive", "nsfw", "rating:safe", "rating:questionable", "rating:explicit",
    }
)  # fmt: skip


def parse_tag_list(text: str | Iterable[str] | None) -> list[str]:
    """Tags typed by a user ("a, b" or a list), stripped, empties and repeats (in any spelling) dropped."""
    if text is None:
        return []
    items = split_tags(text) if isinstance(text, str) else [t.strip() for t in text if t and t.strip()]
    return unique(items)


@dataclass(frozen=True)
class Change:
    """One image's tags before and after an edit: enough to undo and redo it."""

    index: int
    before: Tags
    after: Tags


@dataclass(frozen=True)
class Edit:
    """A recorded batch operation."""

    label: str
    changes: tuple[Change, ...]

    @property
    def image_count(self) -> int:
        return len(self.changes)


@dataclass(frozen=True)
class TagRow:
    tag: str
    images: int
    share: float  # of the images in scope, 0..1


@dataclass(frozen=True)
class Suggestions:
    """Tags on at least `threshold` of the images: character candidates, and generic ones apart."""

    candidates: list[TagRow]
    generic: list[TagRow]
    threshold: float


@dataclass
class SaveResult:
    written: list[Path]
    backup: BackupInfo | None

    @property
    def count(self) -> int:
        return len(self.written)


class DatasetCaptions:
    """All captions of one dataset folder, edited in memory; nothing touches disk until save()."""

    def __init__(
        self,
        folder: Path,
        images: list[Path],
        tags: list[Tags],
        sources: list[str],
        mtimes: list[FileStamp | None] | None = None,
    ):
        self.folder = folder
        self.images = images
        self._tags: list[Tags] = list(tags)
        self.sources = sources  # per image: "txt", "filename" or "none"
        self._disk: list[Tags] = list(tags)  # what a reload would read now
        # The sidecars' stamps when read: a save refuses to overwrite one changed since.
        self._mtimes: list[FileStamp | None] = (
            mtimes if mtimes is not None else [self._caption_mtime(p) for p in images]
        )
        # Keyed by tag_key: "black_hair" and "black hair" are one tag with two spellings.
        self._postings: dict[str, set[int]] = {}
        self._spellings: dict[str, Counter[str]] = {}
        for i, t in enumerate(self._tags):
            self._index_tags(i, (), t)
        self._dirty: set[int] = set()  # images whose tags differ from their file
        self._history: list[Edit] = []
        self._pos = 0  # edits [0, pos) are applied; [pos, len) can be redone
        self._index = {p: i for i, p in enumerate(images)}

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike, *, filename_tags: bool = True, recursive: bool = False) -> DatasetCaptions:
        """Read every image's tags: its .txt sidecar, else (booru style) the tags in its file name."""
        folder = require_folder(folder).resolve()
        images = list_images(folder, recursive=recursive)
        if not images:
            raise DatasetError(f"No images in {folder}. Pick the folder that holds the images and their .txt captions.")
        tags: list[Tags] = []
        sources: list[str] = []
        mtimes: list[FileStamp | None] = []
        for img in images:
            text, mtime = _read_sidecar(img.with_suffix(CAPTION_SUFFIX))
            mtimes.append(mtime)
            if text is not None:
                tags.append(tuple(split_tags(text)))
                sources.append("txt")
            elif filename_tags and (found := filename_to_tags(img)):
                tags.append(tuple(found))
                sources.append("filename")
            else:
                tags.append(())
                sources.append("none")
        return cls(folder, images, tags, sources, mtimes)

    @staticmethod
    def _caption_mtime(image: Path) -> FileStamp | None:
        try:
            return _stamp(caption_path(image).stat())
        except OSError:
            return None

    # -- queries ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def tags_of(self, index: int) -> Tags:
        return self._tags[index]

    def caption_text(self, index: int) -> str:
        return ", ".join(self._tags[index])

    def index_of(self, image: str | os.PathLike) -> int:
        return self._index[Path(image)]

    def count(self, tag: str) -> int:
        return len(self._postings.get(tag_key(tag), ()))

    @property
    def tag_count(self) -> int:
        return len(self._postings)

    def all_tags(self) -> list[str]:
        return [self.spelling_of(k) for k in self._postings]

    def spelling_of(self, tag: str) -> str:
        """How the dataset writes this tag: the canonical form of its most used spelling."""
        counts = self._spellings.get(tag_key(tag))
        if not counts:
            return canonical(tag)
        return canonical(max(counts.items(), key=lambda kv: kv[1])[0])  # ties: first seen

    def variants(self, tag: str) -> list[str]:
        """The spellings of this tag found in the captions, most used first."""
        counts = self._spellings.get(tag_key(tag), Counter())
        return [t for t, _ in counts.most_common()]

    def images_with(self, tag: str) -> set[int]:
        return set(self._postings.get(tag_key(tag), ()))

    def files_with(self, tag: str) -> list[Path]:
        """The images whose caption has this tag in any spelling (to look before deleting it)."""
        return [self.images[i] for i in sorted(self.images_with(tag))]

    def filter(
        self, has: Iterable[str] = (), lacks: Iterable[str] = (), *, match_any: bool = False, text: str = ""
    ) -> list[int]:
        """Indices of the images that have all (or, match_any, any) of `has` and none of `lacks`.

        `text` keeps images whose file name or caption contains it (case-insensitive).
        """
        has, lacks = parse_tag_list(has), parse_tag_list(lacks)
        if has:
            sets = [self._postings.get(tag_key(t), set()) for t in has]
            keep = set().union(*sets) if match_any else set.intersection(*sets)
        else:
            keep = set(range(len(self.images)))
        for t in lacks:
            keep -= self._postings.get(tag_key(t), set())
        if text:
            needle = text.lower()
            keep = {i for i in keep if needle in self.images[i].name.lower() or needle in self.caption_text(i).lower()}
        return sorted(keep)

    def tag_table(self, search: str = "", sort: str = "count", indices: Sequence[int] | None = None) -> list[TagRow]:
        """Every tag with the number and share of images (of `indices`, default all) that have it.

        sort: "count" (most first), "tag" (alphabetical) or "share" (same as count).
        """
        needle = tag_key(search)
        scope_size = len(self.images) if indices is None else len(indices)
        rows = []
        scope = None if indices is None else set(indices)
        for key, posting in self._postings.items():
            if needle and needle not in key:
                continue
            n = len(posting) if scope is None else len(posting & scope)
            if n:
                rows.append(TagRow(self.spelling_of(key), n, n / scope_size if scope_size else 0.0))
        if sort == "tag":
            rows.sort(key=lambda r: r.tag.lower())
        elif sort in ("count", "share"):
            rows.sort(key=lambda r: (-r.images, r.tag.lower()))
        else:
            raise UserInputError(f"Unknown sort {sort!r}: use 'count' or 'tag'.")
        return rows

    def suggest_character_tags(self, threshold: float = 0.5, indices: Sequence[int] | None = None) -> Suggestions:
        """Tags on at least `threshold` of the images: what describes the character, to prune.

        Generic composition/rating tags (solo, 1girl, simple background...) come back apart.
        """
        if not 0 < threshold <= 1:
            raise UserInputError(
                f"Threshold {threshold} must be a share between 0 and 1 (e.g. 0.5 for half the images)."
            )
        rows = [r for r in self.tag_table(indices=indices) if r.share >= threshold]
        candidates = [r for r in rows if tag_key(r.tag) not in GENERIC_TAGS]
        generic = [r for r in rows if tag_key(r.tag) in GENERIC_TAGS]
        return Suggestions(candidates, generic, threshold)

    def complete(self, prefix: str, booru_tags: Iterable[str] = (), limit: int = 20) -> list[str]:
        """Autocomplete: dataset tags (most used first), then booru-list tags, starting with or containing `prefix`."""
        needle = tag_key(prefix)
        if not needle:
            return []
        starts, contains = [], []
        for row in self.tag_table():
            t = tag_key(row.tag)
            (starts if t.startswith(needle) else contains if needle in t else []).append(row.tag)
        out = list(dict.fromkeys(starts + contains))
        if len(out) < limit:
            seen = {tag_key(t) for t in out}
            for tag in booru_tags:
                t = tag_key(tag)
                if t.startswith(needle) and t not in seen:
                    out.append(tag)
                    seen.add(t)
                    if len(out) >= limit:
                        break
        return out[:limit]

    # -- edits ------------------------------------------------------------------------------------
    def _scope(self, indices: Iterable[int] | None) -> Iterable[int]:
        return range(len(self.images)) if indices is None else indices

    def _candidates(self, tags: list[str], indices: Iterable[int] | None) -> list[int]:
        """Images in scope having any of `tags`, found through the index instead of a full scan."""
        hit: set[int] = set()
        for t in tags:
            hit |= self._postings.get(tag_key(t), set())
        if indices is not None:
            hit &= set(indices)
        return sorted(hit)

    def delete_tags(self, tags: str | Iterable[str], indices: Iterable[int] | None = None) -> Edit:
        """Remove `tags`, in every spelling, from every caption (of `indices`, default all)."""
        drop = parse_tag_list(tags)
        if not drop:
            raise UserInputError("No tags to delete: select or type at least one tag.")
        gone = {tag_key(t) for t in drop}
        new = {i: tuple(t for t in self._tags[i] if tag_key(t) not in gone) for i in self._candidates(drop, indices)}
        return self._record(f"delete {', '.join(drop)}", new)

    def replace_tags(
        self, old: str | Iterable[str], new: str | Iterable[str], indices: Iterable[int] | None = None
    ) -> Edit:
        """Replace any of `old` with `new` (one or more tags) where the first old tag stood.

        An image that has several old tags gets `new` once; tags it already has are not repeated.
        """
        old_tags, new_tags = parse_tag_list(old), parse_tag_list(new)
        if not old_tags:
            raise UserInputError("No tags to replace: select or type the tags to replace.")
        if not new_tags:
            raise UserInputError("Type the replacement tag (to remove tags instead, use Delete).")
        gone = {tag_key(t) for t in old_tags}
        changed = {}
        for i in self._candidates(old_tags, indices):
            out: list[str] = []
            inserted = False
            keep = {tag_key(t) for t in self._tags[i] if tag_key(t) not in gone}
            for t in self._tags[i]:
                if tag_key(t) in gone:
                    if not inserted:
                        out.extend(n for n in new_tags if tag_key(n) not in keep)
                        inserted = True
                else:
                    out.append(t)
            changed[i] = tuple(unique(out))
        return self._record(f"replace {', '.join(old_tags)} with {', '.join(new_tags)}", changed)

    def add_tags(
        self, tags: str | Iterable[str], position: str | int = "end", indices: Iterable[int] | None = None
    ) -> Edit:
        """Add `tags` to every caption in scope that lacks them, at "start", "end" or a 0-based position."""
        add = parse_tag_list(tags)
        if not add:
            raise UserInputError("Type the tag to add.")
        pos = parse_position(position)
        changed = {}
        for i in self._scope(indices):
            current = self._tags[i]
            have = {tag_key(t) for t in current}
            missing = [t for t in add if tag_key(t) not in have]
            if not missing:
                continue
            at = len(current) if pos is None else min(pos, len(current))
            changed[i] = current[:at] + tuple(missing) + current[at:]
        where = "end" if pos is None else "start" if pos == 0 else f"position {pos}"
        return self._record(f"add {', '.join(add)} at {where}", changed)

    def move_to_front(self, tags: str | Iterable[str], indices: Iterable[int] | None = None) -> Edit:
        """Put `tags` (in the order given) first in every caption that has them."""
        front = parse_tag_list(tags)
        if not front:
            raise UserInputError("No tags to move: select or type at least one tag.")
        rank = {tag_key(t): n for n, t in enumerate(front)}
        changed = {}
        for i in self._candidates(front, indices):
            current = self._tags[i]
            # The image's own spelling moves; only the order changes.
            moved = sorted((t for t in current if tag_key(t) in rank), key=lambda t: rank[tag_key(t)])
            changed[i] = tuple(moved) + tuple(t for t in current if tag_key(t) not in rank)
        return self._record(f"move {', '.join(front)} to the front", changed)

    def normalize(self, spelling: Spelling = CANONICAL, indices: Iterable[int] | None = None) -> Edit:
        """Rewrite every caption (of `indices`) to one spelling per tag; a tag written twice is kept once.

        Variants of a tag become the canonical form of the dataset's most used one (so its case
        wins); `spelling` can ask for escaped brackets or underscores instead.
        """
        changed = {}
        for i in self._scope(indices):
            # A weighted tag, (tag:0.8), keeps its own weight around the shared spelling.
            changed[i] = tuple(
                unique(spell(t if split_weight(t)[1] else self.spelling_of(t), spelling) for t in self._tags[i])
            )
        return self._record("normalize tag spelling", changed)

    def set_caption(self, index: int, text: str | Iterable[str]) -> Edit:
        """Replace one image's caption (the caption editor)."""
        if not 0 <= index < len(self.images):
            raise UserInputError(f"No image number {index} in this dataset of {len(self.images)}.")
        if isinstance(text, str):
            tags = tuple(split_tags(text.replace("\n", ",")))  # one tag per line works too
        else:
            tags = tuple(t.strip() for t in text if t.strip())
        return self._record(f"edit caption of {self.images[index].name}", {index: tags})

    def _record(self, label: str, new_tags: dict[int, Tags]) -> Edit:
        changes = tuple(Change(i, self._tags[i], after) for i, after in new_tags.items() if self._tags[i] != after)
        edit = Edit(label, changes)
        if not changes:
            return edit  # a no-op is not worth an undo step
        for c in changes:
            self._set(c.index, c.after)
        del self._history[self._pos :]
        self._history.append(edit)
        self._pos += 1
        return edit

    def _index_tags(self, i: int, old: Tags, new: Tags) -> None:
        # Only the spellings that come or go are looked at: a delete on 10,000 captions touches one each.
        diff = Counter(new)
        diff.subtract(old)
        new_keys: set[str] | None = None
        for tag, n in diff.items():
            if not n:
                continue
            key = tag_key(tag)
            counts = self._spellings.setdefault(key, Counter())
            counts[tag] += n
            if counts[tag] <= 0:
                del counts[tag]
            if n > 0:
                self._postings.setdefault(key, set()).add(i)
                continue
            if new_keys is None:
                new_keys = {tag_key(t) for t in new}
            if key not in new_keys:
                posting = self._postings[key]
                posting.discard(i)
                if not posting:
                    del self._postings[key]
                    del self._spellings[key]

    def _set(self, i: int, tags: Tags) -> None:
        self._index_tags(i, self._tags[i], tags)
        self._tags[i] = tags
        if tags == self._disk[i]:
            self._dirty.discard(i)
        else:
            self._dirty.add(i)

    # -- history ----------------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return self._pos > 0

    @property
    def can_redo(self) -> bool:
        return self._pos < len(self._history)

    @property
    def history(self) -> list[str]:
        """Labels of the applied edits, oldest first."""
        return [e.label for e in self._history[: self._pos]]

    def undo(self) -> Edit | None:
        if not self.can_undo:
            return None
        self._pos -= 1
        edit = self._history[self._pos]
        for c in edit.changes:
            self._set(c.index, c.before)
        return edit

    def redo(self) -> Edit | None:
        if not self.can_redo:
            return None
        edit = self._history[self._pos]
        self._pos += 1
        for c in edit.changes:
            self._set(c.index, c.after)
        return edit

    # -- saving -----------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """True when some caption differs from the file on disk (unsaved changes)."""
        return bool(self._dirty)

    def unsaved(self) -> list[int]:
        return sorted(self._dirty)

    def save(self, *, backup: bool = True) -> SaveResult:
        """Write the changed captions atomically, after backing up the ones they replace.

        Checks every target first (read-only, changed on disk since opened), so a refused save
        writes nothing; a write failing midway puts the already written files back.
        """
        targets = self.unsaved()
        if not targets:
            return SaveResult([], None)
        paths = [caption_path(self.images[i]) for i in targets]
        check_writable(paths)
        # Held from the check to the last write: another save (a second browser, the CLI) waits, then sees
        # these files changed and is refused, instead of both passing the check and one losing its edits.
        with caption_writer(self.folder):
            moved = [
                p.name
                for i, p in zip(targets, paths, strict=True)
                if self._caption_mtime(self.images[i]) != self._mtimes[i]
            ]
            if moved:
                raise DatasetError(
                    f"{', '.join(moved[:5])}{' and more' if len(moved) > 5 else ''} changed on disk since the "
                    "dataset was opened. Nothing was written; reopen the folder (your edits would overwrite those "
                    "changes)."
                )
            info = (
                create_backup(self.folder, paths, kind="save", label=self.history[-1] if self.history else "")
                if backup
                else None
            )
            written: list[Path] = []
            try:
                for i, p in zip(targets, paths, strict=True):
                    atomic_write_text(p, ", ".join(self._tags[i]))
                    written.append(p)
            except WriteError as e:
                kept_new = set(self._roll_back(written, info))
                for i, p in zip(targets, written, strict=False):
                    self._mtimes[i] = self._caption_mtime(self.images[i])  # our own writes, not someone else's
                    if p in kept_new:
                        self._disk[i] = self._tags[i]
                        self.sources[i] = "txt"
                        self._dirty.discard(i)
                raise DatasetError(f"Save failed: {e} {_rollback_report(written, kept_new, info)}") from e
        for i in targets:
            self._disk[i] = self._tags[i]
            self.sources[i] = "txt"
            self._mtimes[i] = self._caption_mtime(self.images[i])
        self._dirty.clear()
        return SaveResult(written, info)

    def _roll_back(self, written: list[Path], info: BackupInfo | None) -> list[Path]:
        """Put back what `written` held before this save; returns the files that still hold the new text."""
        if info is None:
            return list(written)
        replaced = set(info.replaced)
        failed = []
        for p in written:
            rel = p.relative_to(self.folder).as_posix()
            try:
                if rel in replaced:
                    put_back(info.path / rel, p)
                else:
                    p.unlink(missing_ok=True)
            except (OSError, WriteError):
                failed.append(p)
        return failed


def _stamp(st: os.stat_result) -> FileStamp:
    # Every writer here replaces a file by rename (a new inode), so the inode tells a change apart even
    # within one tick of a coarse filesystem clock, where the modification time alone would not.
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def _rollback_report(written: list[Path], kept_new: set[Path], info: BackupInfo | None) -> str:
    """What a failed save left on disk, said truthfully."""
    if not written:
        return "No caption was changed."
    if not kept_new:
        return f"The {len(written)} caption(s) written before it were put back; nothing changed."
    names = ", ".join(p.name for p in sorted(kept_new)[:5]) + (" and more" if len(kept_new) > 5 else "")
    where = (
        f"their earlier text is in backup {info.name} (Undo / `tags DIR restore` brings it back once there is space)"
        if info is not None
        else "no backup was kept"
    )
    return f"{len(kept_new)} of the {len(written)} caption(s) written before it could not be put back and hold the new text: {names}; {where}."


def _read_sidecar(path: Path) -> tuple[str | None, FileStamp | None]:
    """A caption file's text and modification time (one open, one fstat: this runs 10,000 times)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            # utf-8-sig: Windows tag editors often write a BOM, which must not stick to the first tag.
            return f.read(), _stamp(os.fstat(f.fileno()))
    except FileNotFoundError:
        return None, None
    except OSError as e:
        raise DatasetError(f"Cannot read the caption {path.name}: {e.strerror}. Check its permissions.") from e


def parse_position(position: str | int | None) -> int | None:
    """None for the end, else a 0-based index ("start" = 0, "3" = 3)."""
    if position is None or position == "end":
        return None
    if position == "start":
        return 0
    try:
        n = int(position)
    except (TypeError, ValueError):
        raise UserInputError(f"Position {position!r}: use start, end or a number (0 = first).") from None
    if n < 0:
        raise UserInputError(f"Position {n}: use 0 or more (0 = first), or 'end'.")
    return n


def filename_to_tags(image: str | os.PathLike) -> list[str]:
    """Tags in a booru-style file name ("1girl, solo (1).jpg", "00001-0 1girl, solo.png"); [] for md5/ids."""
    stem = booru_stem(image)
    if not stem or _NOT_TAGS.fullmatch(stem):
        return []
    return split_tags(stem)
