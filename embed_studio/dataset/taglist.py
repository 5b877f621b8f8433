"""A booru tag list (tag-autocomplete CSV, e621's tags export, or plain text): names, counts, aliases."""

from __future__ import annotations

import csv
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from embed_studio.errors import FileFormatError, UserInputError
from embed_studio.tagspell import canonical, tag_key

MAX_TAGS = 2_000_000


@dataclass
class TagList:
    """The tags a model knows with their post counts (how often it saw each) and aliases.

    Names are kept as the booru writes them (lower case, underscores); lookups accept any
    spelling of a tag.
    """

    counts: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias key -> tag name
    source: str = ""
    _by_key: dict[str, str] = field(default_factory=dict, repr=False)

    def add(self, name: str, count: int = 0) -> str:
        name = name.strip().lower()
        self.counts[name] = max(count, self.counts.get(name, 0))
        self._by_key.setdefault(tag_key(name), name)
        return name

    def canonical(self, tag: str) -> str | None:
        """The list's name for this tag or one of its aliases, None when the list lacks it."""
        key = tag_key(tag)
        return self._by_key.get(key) or self.aliases.get(key)

    def count(self, tag: str) -> int:
        name = self.canonical(tag)
        return self.counts.get(name, 0) if name else 0

    def names(self) -> list[str]:
        """Every tag as captions spell it, most used first (file order among equals)."""
        order = sorted(enumerate(self.counts.items()), key=lambda item: (-item[1][1], item[0]))
        return [canonical(name) for _, (name, _) in order]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.counts)


# e621's whole tags export is about 100 MB unpacked: far bigger is a crafted file or a decompression bomb.
TAG_LIST_MAX_BYTES = 512 * 1024 * 1024


def _gunzip_capped(raw: bytes, name: str) -> bytes:
    """gzip data unpacked to at most TAG_LIST_MAX_BYTES (a bomb stops there instead of filling memory)."""
    unpacker = zlib.decompressobj(wbits=31)
    try:
        out = unpacker.decompress(raw, TAG_LIST_MAX_BYTES + 1)
    except zlib.error as e:
        raise FileFormatError(f"Tag list {name} is a damaged .gz file ({e}); download it again.") from e
    if len(out) > TAG_LIST_MAX_BYTES or unpacker.unconsumed_tail:
        raise FileFormatError(f"Tag list {name} unpacks to over {TAG_LIST_MAX_BYTES >> 20} MiB: not a tag list.")
    return out


def load_tag_list(path: str | os.PathLike) -> TagList:
    """Read the tag-autocomplete CSV (name,type,count,"aliases"; no header), e621's daily export
    (id,name,category,post_count with a header) or a one-tag-a-line text file, plain or .gz."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(f"Tag list {path} does not exist. Give the path (or URL) of a tag CSV.")
    try:
        if path.stat().st_size > TAG_LIST_MAX_BYTES:
            raise FileFormatError(f"Tag list {path.name} is over {TAG_LIST_MAX_BYTES >> 20} MiB: not a tag list.")
        raw = path.read_bytes()
    except OSError as e:
        raise UserInputError(f"Cannot read tag list {path}: {e.strerror}. Pick a .csv or .txt tag list.") from e
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip_capped(raw, path.name)
    text = raw.decode("utf-8-sig", errors="replace")
    tags = TagList(source=str(path))
    name_col, count_col, alias_col = 0, 2, 3
    for i, row in enumerate(csv.reader(io.StringIO(text))):
        if i == 0 and row and "name" in [c.strip().lower() for c in row]:
            header = [c.strip().lower() for c in row]
            name_col = header.index("name")
            count_col = header.index("post_count") if "post_count" in header else -1
            alias_col = -1
            continue
        if len(row) <= name_col or not row[name_col].strip() or row[0].startswith("#"):
            continue
        count = _int(row[count_col]) if 0 <= count_col < len(row) else 0
        name = tags.add(row[name_col], count)
        if 0 <= alias_col < len(row):
            for alias in row[alias_col].split(","):
                if alias.strip():
                    tags.aliases.setdefault(tag_key(alias), name)
        if len(tags) >= MAX_TAGS:
            break
    if not tags.counts:
        raise FileFormatError(
            f"{path.name} holds no tags. Use the tag-autocomplete extension's CSV (name,type,count,aliases), "
            "e621's tags export (id,name,category,post_count) or a text file with one tag a line."
        )
    return tags


def _int(value: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0
