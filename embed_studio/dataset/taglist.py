"""Load a booru tag list (tagcomplete-style CSV or plain text) for autocomplete."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from embed_studio.errors import DatasetError


def load_tag_list(path: str | os.PathLike, limit: int = 200_000) -> list[str]:
    """Tag names, most used first when the file has counts.

    Accepts a1111-tagcomplete CSVs ("tag,type,count,aliases") and one-tag-per-line text files.
    Underscores become spaces, as WD taggers and the WebUI write tags.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DatasetError(f"Cannot read tag list {path}: {e.strerror}. Pick a .csv or .txt tag list.") from e
    rows: list[tuple[str, int]] = []
    for n, row in enumerate(csv.reader(text.splitlines())):
        if not row or not row[0].strip() or row[0].startswith("#"):
            continue
        count = 0
        if len(row) >= 3:
            try:
                count = int(float(row[2]))
            except ValueError:
                count = 0
        tag = row[0].strip()
        # Kaomoji such as "o_o" or "^_^" keep their underscores, as the WD taggers do.
        rows.append((tag.replace("_", " ") if len(tag) > 3 else tag, count if count else -n))
        if len(rows) >= limit:
            break
    rows.sort(key=lambda r: -r[1])
    return list(dict.fromkeys(tag for tag, _ in rows))
