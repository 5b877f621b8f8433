"""One user's dataset editing session (held in gr.State): the captions, the filter, the gallery page."""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from embed_studio.dataset.captions import DatasetCaptions, Edit, parse_tag_list
from embed_studio.dataset.dedupe import DedupeReport
from embed_studio.dataset.thumbs import thumbnail
from embed_studio.errors import DatasetError, UserInputError

PAGE_SIZE = 48  # thumbnails per gallery page: a 10k-image folder never sends more than this to the browser
TABLE_LIMIT = 1000  # tag table rows sent to the browser; the search narrows the rest

ALL, FILTERED = "All images", "Filtered images"


@dataclass
class TagFilter:
    has: list[str] = field(default_factory=list)
    lacks: list[str] = field(default_factory=list)
    match_any: bool = False
    text: str = ""

    @property
    def active(self) -> bool:
        return bool(self.has or self.lacks or self.text)


class DatasetSession:
    """Everything one browser edits; the UI calls these methods and renders what they return."""

    def __init__(self) -> None:
        self.captions: DatasetCaptions | None = None
        self.booru_tags: Iterable[str] = []  # a loaded TagList: its names, most used first
        self.filter = TagFilter()
        self.page = 0
        self.selected: int | None = None  # image index in the caption editor
        self.dedupe: DedupeReport | None = None
        self.filename_tags = True
        self._filtered: list[int] | None = None

    # -- dataset ----------------------------------------------------------------------------------
    def open(self, folder: str | os.PathLike, *, filename_tags: bool = True, discard: bool = False) -> DatasetCaptions:
        if not str(folder).strip():
            raise UserInputError("Type the path of a dataset folder (images with .txt captions).")
        if self.captions is not None and self.captions.dirty and not discard:
            raise DatasetError(
                f"{len(self.captions.unsaved())} unsaved caption change(s): Save them first, or confirm discarding them."
            )
        self.captions = DatasetCaptions.load(Path(str(folder).strip()), filename_tags=filename_tags)
        self.filename_tags = filename_tags
        self.page, self.selected, self.dedupe = 0, None, None
        self._filtered = None
        return self.captions

    def reload(self, discard: bool = False) -> DatasetCaptions:
        ds = self.require()
        return self.open(ds.folder, filename_tags=self.filename_tags, discard=discard)

    def require(self) -> DatasetCaptions:
        if self.captions is None:
            raise UserInputError("Open a dataset folder first.")
        return self.captions

    @property
    def dirty(self) -> bool:
        return self.captions is not None and self.captions.dirty

    # -- filter and scope -------------------------------------------------------------------------
    def set_filter(
        self, has: str | list[str] = "", lacks: str | list[str] = "", match_any: bool = False, text: str = ""
    ) -> None:
        self.filter = TagFilter(parse_tag_list(has), parse_tag_list(lacks), bool(match_any), (text or "").strip())
        self.page = 0
        self._filtered = None

    def filtered(self) -> list[int]:
        """Indices of the images passing the filter (all when none is set); recomputed after edits."""
        ds = self.require()
        if not self.filter.active:
            return list(range(len(ds)))
        if self._filtered is None:
            f = self.filter
            self._filtered = ds.filter(f.has, f.lacks, match_any=f.match_any, text=f.text)
        return self._filtered

    def scope(self, which: str) -> list[int] | None:
        """None (every image) or the filtered indices, for a batch operation."""
        return None if which != FILTERED or not self.filter.active else self.filtered()

    def edited(self, edit: Edit | None) -> Edit | None:
        # An edit can move images in or out of the filter: recompute it next time.
        self._filtered = None
        return edit

    # -- views ------------------------------------------------------------------------------------
    def table(self, search: str = "", sort: str = "count") -> tuple[list[list], int]:
        """Rows [tag, images, share %] counted over the filtered images, and the total matching."""
        ds = self.require()
        scope = self.filtered() if self.filter.active else None
        rows = ds.tag_table(search, sort, scope)
        return [[r.tag, r.images, round(100 * r.share, 1)] for r in rows[:TABLE_LIMIT]], len(rows)

    @property
    def page_count(self) -> int:
        return max(1, -(-len(self.filtered()) // PAGE_SIZE))

    def turn(self, delta: int = 0, page: int | None = None) -> int:
        target = self.page + delta if page is None else page
        self.page = min(max(0, target), self.page_count - 1)
        return self.page

    def page_indices(self) -> list[int]:
        self.turn(0)
        start = self.page * PAGE_SIZE
        return self.filtered()[start : start + PAGE_SIZE]

    def gallery(self, thumb_size: int = 256) -> list[tuple[str, str]]:
        """(thumbnail path, caption) of the current page only; thumbnails are made on demand."""
        ds = self.require()
        out = []
        for i in self.page_indices():
            path = ds.images[i]
            out.append((str(thumbnail(path, thumb_size)), path.name))
        return out

    def select_on_page(self, position: int) -> int:
        indices = self.page_indices()
        if not 0 <= position < len(indices):
            raise UserInputError("That image is no longer on this page; pick it again.")
        self.selected = indices[position]
        return self.selected

    def status(self) -> str:
        if self.captions is None:
            return "No dataset open."
        ds = self.captions
        parts = [f"**{len(ds)} images**, {ds.tag_count} tags in `{ds.folder}`"]
        if self.filter.active:
            parts.append(f"filter: {len(self.filtered())} images")
        unsaved = len(ds.unsaved())
        parts.append(f"**{unsaved} unsaved**" if unsaved else "saved")
        if ds.history:
            parts.append(f"last: {ds.history[-1]}")
        return " · ".join(parts)

    def dirty_html(self) -> str:
        """The hidden marker javascript/es-dataset.js reads to ask before the page is left."""
        flag = "1" if self.dirty else "0"
        count = len(self.captions.unsaved()) if self.captions else 0
        return f'<div data-es-dirty="{flag}" data-es-unsaved="{count}" style="display:none">{html.escape(str(count))}</div>'
