"""Read a tagger's tag list (selected_tags.csv or Z3D's tags-selected.csv) into index arrays."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embed_studio.errors import FileFormatError

# The category column of WD's selected_tags.csv; e621's CSV uses e621's own ids (4 = character
# there too, 5 = species...). Everything that is neither a rating nor a character is "general".
RATING, GENERAL, CHARACTER = 9, 0, 4
NAME_HEADERS = ("name", "tag", "tag_name")


@dataclass
class TagLabels:
    """The model's output rows: a name and a category for each."""

    names: list[str]
    categories: np.ndarray  # int, one per name

    def __post_init__(self) -> None:
        self.rating_idx = np.flatnonzero(self.categories == RATING)
        self.character_idx = np.flatnonzero(self.categories == CHARACTER)
        self.general_idx = np.flatnonzero((self.categories != RATING) & (self.categories != CHARACTER))

    def __len__(self) -> int:
        return len(self.names)


def load_labels(path: str | os.PathLike) -> TagLabels:
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
    return TagLabels(names=names, categories=np.asarray(categories, dtype=np.int64))
