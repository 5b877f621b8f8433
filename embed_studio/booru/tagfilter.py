"""Turn a post's booru tags into a caption: model tag list, categories, order, include/exclude."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from embed_studio.booru.client import BooruClient
from embed_studio.booru.post import Post
from embed_studio.dataset.taglist import TAG_LIST_MAX_BYTES, TagList, load_tag_list
from embed_studio.errors import UserInputError
from embed_studio.fileio import atomic_writer
from embed_studio.tagspell import CATEGORIES, Spelling, tag_key

# e621/Danbooru file these under "artist" though they name no artist.
NOT_ARTISTS = frozenset(
    {
        "conditional_dnp", "sound_warning", "unknown_artist", "unknown_artist_signature", "anonymous_artist",
        "avoid_posting", "third-party_edit", "epilepsy_warning", "jumpscare_warning", "artist_request",
        "banned_artist", "creepy_warning", "seizure_warning",
    }
)  # fmt: skip
# A post's tag categories (tagspell owns the names); its rating is not one, and "invalid" tags are typos.
ALL_CATEGORIES = tuple(c for c in CATEGORIES if c not in ("rating", "invalid"))
DEFAULT_CATEGORIES = ("general", "species")


def cached_tag_list(
    url: str, cache_dir: str | os.PathLike, client: BooruClient, max_bytes: int = TAG_LIST_MAX_BYTES
) -> Path:
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
            written = 0
            for chunk in response.iter_content(256 * 1024):
                written += len(chunk)
                if written > max_bytes:  # raising here leaves no partial file behind
                    raise UserInputError(
                        f"The tag list at {url} is over {max_bytes >> 20} MiB: not a tag list. "
                        "Give another URL or a local file."
                    )
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
    # "(series)" -> "\(series\)" in the file: only for the WebUI's own Train tab, which reads files
    # as they are; our trainer escapes [filewords] itself.
    escape_brackets: bool = False
    separator: str = ", "

    def __post_init__(self) -> None:
        unknown = [c for c in self.categories if c not in ALL_CATEGORIES]
        if unknown:
            raise UserInputError(f"Unknown tag categories {unknown}; choose from {', '.join(ALL_CATEGORIES)}.")

    @property
    def spelling(self) -> Spelling:
        return Spelling(underscores=not self.underscores_to_spaces, escape=self.escape_brackets)


def caption_tags(post: Post, options: TagOptions, tag_list: TagList | None = None) -> list[str]:
    """The caption's tags in order: rating, artist, always-include, then the post's kept tags."""
    # Patterns match the tag's identity, so "*_eyes" and "* eyes" both catch blue_eyes.
    excluded = [tag_key(p) for p in options.exclude]

    def is_excluded(tag: str) -> bool:
        key = tag_key(tag)
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in excluded)

    head: list[str] = []
    if options.prepend_rating and post.rating_name:
        head.append(options.rating_template.format(rating=post.rating_name))
    not_artists = {tag_key(t) for t in NOT_ARTISTS}
    artists = [a for a in post.artists if tag_key(a) not in not_artists and not is_excluded(a)]
    if options.prepend_artist and artists:
        head.append(options.artist_template.format(artist=" and ".join(options.spelling(a) for a in artists)))

    body: list[str] = []
    seen: set[str] = set()
    for tag in options.include:
        if tag_key(tag) not in seen and tag.strip():
            seen.add(tag_key(tag))
            body.append(tag.strip())
    candidates: list[tuple[int, int, str]] = []
    for category in options.categories:
        for tag in post.tags.get(category, []):
            if category == "artist" and options.prepend_artist:
                continue  # already in the "by X" prefix
            name = tag_list.canonical(tag) if tag_list else tag
            if name is None:
                if options.keep_only_listed:
                    continue
                name = tag
            if tag_key(name) in seen or is_excluded(name):
                continue
            seen.add(tag_key(name))
            count = tag_list.count(name) if tag_list and options.sort_by_count else 0
            candidates.append((-count, len(candidates), name))
    candidates.sort()
    body.extend(options.spelling(name) for _, _, name in candidates)
    return head + body


def format_caption(post: Post, options: TagOptions, tag_list: TagList | None = None) -> str:
    return options.separator.join(caption_tags(post, options, tag_list))


def parse_tag_field(text: str) -> tuple[str, ...]:
    """Tags typed into a form or flag: comma separated (newlines too)."""
    return tuple(t.strip() for t in re.split(r"[,\n]", text or "") if t.strip())
