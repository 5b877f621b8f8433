"""Read a tagger's tag list (selected_tags.csv or Z3D's tags-selected.csv) into index arrays."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embed_studio.errors import FileFormatError
from embed_studio.tagspell import VOCABULARIES, category_name, tag_key

# WD's selected_tags.csv marks its rating rows 9; e621's numbers (Z3D) have no such rows.
RATING, GENERAL = 9, 0
NAME_HEADERS = ("name", "tag", "tag_name")


@dataclass
class TagLabels:
    """The model's output rows: a name and a category for each."""

    names: list[str]
    categories: np.ndarray  # int, one per name, in the CSV's numbering
    vocabulary: str = ""  # "danbooru" or "e621"; "" = WD's numbering if it has rating rows, else e621's

    def __post_init__(self) -> None:
        if self.vocabulary not in VOCABULARIES:
            self.vocabulary = "danbooru" if (self.categories == RATING).any() else "e621"
        self.category_names = [category_name(c, self.vocabulary) for c in self.categories.tolist()]
        by_category: dict[str, list[int]] = {}
        for i, name in enumerate(self.category_names):
            by_category.setdefault(name, []).append(i)
        self._indices = {c: np.asarray(ix, dtype=np.int64) for c, ix in by_category.items()}
        self._by_key = {tag_key(n): c for n, c in zip(self.names, self.category_names, strict=True)}
        self.rating_idx = self.indices("rating")
        self.character_idx = self.indices("character")
        self.general_idx = self.indices("general")

    def indices(self, category: str) -> np.ndarray:
        return self._indices.get(category, np.zeros(0, dtype=np.int64))

    @property
    def present_categories(self) -> list[str]:
        return list(self._indices)

    def category_of(self, tag: str) -> str | None:
        """The category of a tag in any spelling, None when the model does not know it."""
        return self._by_key.get(tag_key(tag))

    def __len__(self) -> int:
        return len(self.names)


def load_labels(path: str | os.PathLike, vocabulary: str = "") -> TagLabels:
    """Parse a tags CSV with a header naming a `name` column (and usually `category`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise FileFormatError(f"Cannot read the tag list {path}: {e.strerror or e}.") from e
    rows = list(csv.reader(text.splitlines()))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise FileFormatError(f"The tag list {path} is empty. Re-download the model's CSV.")
    header = [c.strip().lower() for c in rows[0]]
    name_header = next((h for h in NAME_HEADERS if h in header), None)
    if name_header:
        name_col = header.index(name_header)
        cat_col = header.index("category") if "category" in header else None
        body = rows[1:]
    elif len(header) == 1:
        # A bare list of tag names, one a line.
        name_col, cat_col, body = 0, None, rows
    else:
        raise FileFormatError(
            f"The tag list {path} has no 'name' column (header: {', '.join(rows[0])}). "
            "Use the CSV that came with the model (selected_tags.csv)."
        )
    names: list[str] = []
    categories: list[int] = []
    for line_no, row in enumerate(body, start=2):
        if name_col >= len(row):
            raise FileFormatError(f"{path.name} line {line_no} has no tag name. Re-download the model's CSV.")
        names.append(row[name_col].strip())
        category = GENERAL
        if cat_col is not None and cat_col < len(row) and row[cat_col].strip():
            try:
                category = int(float(row[cat_col]))
            except ValueError as e:
                raise FileFormatError(f"{path.name} line {line_no}: category {row[cat_col]!r} is not a number.") from e
        categories.append(category)
    if not names:
        raise FileFormatError(f"The tag list {path} lists no tags. Re-download the model's CSV.")
    return TagLabels(names=names, categories=np.asarray(categories, dtype=np.int64), vocabulary=vocabulary)
