"""Turn a post's booru tags into a caption: model tag list, categories, order, include/exclude."""

from __future__ import annotations

import csv
import fnmatch
import gzip
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from embed_studio.booru.client import BooruClient
from embed_studio.booru.post import Post
from embed_studio.errors import FileFormatError, UserInputError
from embed_studio.fileio import atomic_writer

# e621/Danbooru file these under "artist" though they name no artist.
NOT_ARTISTS = frozenset(
    {
        "conditional_dnp", "sound_warning", "unknown_artist", "unknown_artist_signature", "anonymous_artist",
        "avoid_posting", "third-party_edit", "epilepsy_warning", "jumpscare_warning", "artist_request",
        "banned_artist", "creepy_warning", "seizure_warning",
    }
)  # fmt: skip
ALL_CATEGORIES = ("general", "species", "character", "copyright", "artist", "contributor", "meta", "lore")
DEFAULT_CATEGORIES = ("general", "species")
_HAS_LETTER = re.compile(r"[^\W\d_]")


@dataclass
class TagList:
    """A model's known tags with their post counts (how often the model saw each) and aliases."""

    counts: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> tag
    source: str = ""

    def canonical(self, tag: str) -> str | None:
        key = normalize(tag)
        if key in self.counts:
            return key
        return self.aliases.get(key)

    def count(self, tag: str) -> int:
        return self.counts.get(normalize(tag), 0)

    def __len__(self) -> int:
        return len(self.counts)


def normalize(tag: str) -> str:
    return tag.strip().lower().replace(" ", "_")


def load_tag_list(path: str | os.PathLike) -> TagList:
    """Read the tag-autocomplete CSV (name,type,count,"aliases"; no header) or e621's daily export
    (id,name,category,post_count with a header), plain or .gz."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(f"Tag list {path} does not exist. Give the path (or URL) of a tag CSV.")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise FileFormatError(f"Tag list {path.name} is a damaged .gz file ({e}); download it again.") from e
    text = raw.decode("utf-8", errors="replace")
    tags = TagList(source=str(path))
    rows = csv.reader(io.StringIO(text))
    name_col, count_col, alias_col = 0, 2, 3
    for i, row in enumerate(rows):
        if i == 0 and row and "name" in [c.strip().lower() for c in row]:
            header = [c.strip().lower() for c in row]
            name_col = header.index("name")
            count_col = header.index("post_count") if "post_count" in header else -1
            alias_col = -1
            continue
        if len(row) <= name_col or not row[name_col].strip():
            continue
        name = normalize(row[name_col])
        count = _int(row[count_col]) if 0 <= count_col < len(row) else 0
        tags.counts[name] = max(count, tags.counts.get(name, 0))
        if 0 <= alias_col < len(row):
            for alias in row[alias_col].split(","):
                if alias.strip():
                    tags.aliases.setdefault(normalize(alias), name)
    if not tags.counts:
        raise FileFormatError(
            f"{path.name} holds no tags. Use the tag-autocomplete extension's CSV (name,type,count,aliases) "
            "or e621's tags export (id,name,category,post_count)."
        )
    return tags


def cached_tag_list(url: str, cache_dir: str | os.PathLike, client: BooruClient) -> Path:
    """Download a tag list URL once into cache_dir; later calls reuse the cached file."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]) or "tags.csv"
    # Two sites' "tags.csv" must not share a cache entry.
    path = cache_dir / f"{hashlib.sha1(url.encode()).hexdigest()[:10]}-{name}"
    if path.is_file() and path.stat().st_size > 0:
        return path
    response = client.stream(url)
    try:
        with atomic_writer(path) as out:
            for chunk in response.iter_content(256 * 1024):
                out.write(chunk)
    finally:
        response.close()
    return path


def resolve_tag_list(source: str, cache_dir: str | os.PathLike, client: BooruClient | None) -> TagList | None:
    """A TagList from a path or an http(s) URL (downloaded once, cached), or None for ''."""
    source = (source or "").strip()
    if not source:
        return None
    if source.startswith(("http://", "https://")):
        if client is None:
            raise UserInputError("A tag list URL needs a network client; give a local path instead.")
        return load_tag_list(cached_tag_list(source, cache_dir, client))
    return load_tag_list(source)


@dataclass
class TagOptions:
    """How a post's tags become a caption (mrq's preprocess, as options)."""

    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    keep_only_listed: bool = True  # with a tag list: drop tags the model never saw
    sort_by_count: bool = True  # with a tag list: most-seen tags first
    prepend_rating: bool = True
    rating_template: str = "{rating} content"  # the yiffy models' "explicit content"
    prepend_artist: bool = True
    artist_template: str = "by {artist}"
    include: tuple[str, ...] = ()  # always in the caption, right after rating/artist
    exclude: tuple[str, ...] = ()  # never in the caption; * and ? wildcards allowed
    underscores_to_spaces: bool = True
    escape_brackets: bool = True  # "(series)" -> "\(series\)": the WebUI reads bare () as emphasis
    separator: str = ", "

    def __post_init__(self) -> None:
        unknown = [c for c in self.categories if c not in ALL_CATEGORIES]
        if unknown:
            raise UserInputError(f"Unknown tag categories {unknown}; choose from {', '.join(ALL_CATEGORIES)}.")


def caption_tags(post: Post, options: TagOptions, tag_list: TagList | None = None) -> list[str]:
    """The caption's tags in order: rating, artist, always-include, then the post's kept tags."""
    excluded = [normalize(p) for p in options.exclude]

    def is_excluded(tag: str) -> bool:
        key = normalize(tag)
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in excluded)

    head: list[str] = []
    if options.prepend_rating and post.rating_name:
        head.append(options.rating_template.format(rating=post.rating_name))
    artists = [a for a in post.artists if normalize(a) not in NOT_ARTISTS and not is_excluded(a)]
    if options.prepend_artist and artists:
        head.append(options.artist_template.format(artist=" and ".join(_format(a, options) for a in artists)))

    body: list[str] = []
    seen: set[str] = set()
    for tag in options.include:
        if normalize(tag) not in seen and tag.strip():
            seen.add(normalize(tag))
            body.append(tag.strip())
    candidates: list[tuple[int, int, str]] = []
    for category in options.categories:
        for tag in post.tags.get(category, []):
            if category == "artist" and options.prepend_artist:
                continue  # already in the "by X" prefix
            name = tag_list.canonical(tag) if tag_list else normalize(tag)
            if name is None:
                if options.keep_only_listed:
                    continue
                name = normalize(tag)
            if name in seen or is_excluded(name):
                continue
            seen.add(name)
            count = tag_list.count(name) if tag_list and options.sort_by_count else 0
            candidates.append((-count, len(candidates), name))
    candidates.sort()
    body.extend(_format(name, options) for _, _, name in candidates)
    return head + body


def format_caption(post: Post, options: TagOptions, tag_list: TagList | None = None) -> str:
    return options.separator.join(caption_tags(post, options, tag_list))


def _format(tag: str, options: TagOptions) -> str:
    # Kaomoji like ^_^ keep their underscores: there they are the face, not a word separator.
    if options.underscores_to_spaces and _HAS_LETTER.search(tag):
        tag = tag.replace("_", " ")
    if options.escape_brackets:
        tag = re.sub(r"(?<!\\)([()\[\]])", r"\\\1", tag)
    return tag


def parse_tag_field(text: str) -> tuple[str, ...]:
    """Tags typed into a form or flag: comma separated (newlines too)."""
    return tuple(t.strip() for t in re.split(r"[,\n]", text or "") if t.strip())


def _int(value: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0
