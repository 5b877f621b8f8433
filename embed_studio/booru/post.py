"""The booru-neutral post record and the interface every booru site implements."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from embed_studio.booru.client import BooruClient, HTTPStatusError
from embed_studio.errors import NetworkError

CATEGORIES = ("general", "species", "character", "copyright", "artist", "contributor", "meta", "lore", "invalid")
RATING_NAMES = {"g": "general", "s": "safe", "q": "questionable", "e": "explicit"}
# What e621 and Danbooru serve (ugoira as zip); a post's md5 and extension become a file name,
# so only these pass.
FILE_TYPES = frozenset({"jpg", "jpeg", "png", "gif", "webp", "avif", "bmp", "webm", "mp4", "swf", "zip"})
MD5_RE = re.compile(r"^[0-9a-f]{32}$")
SAMPLE_PREFIX = "sample-"  # a sample is not the original: its name must not pass for md5.ext


@dataclass
class Post:
    """One post, normalised: what the downloader and the tag filter need, from any booru."""

    id: int
    md5: str
    ext: str  # of the original file, no dot
    file_url: str | None  # None: deleted, or hidden from this (anonymous) user
    size: int | None = None
    width: int | None = None
    height: int | None = None
    sample_url: str | None = None
    sample_ext: str | None = None
    tags: dict[str, list[str]] = field(default_factory=dict)  # category -> tags
    rating: str = ""  # the site's one-letter rating
    rating_name: str = ""  # "explicit", "safe", ...
    score: int = 0
    deleted: bool = False  # deleted (or, on Danbooru, banned): not fetched
    problem: str = ""  # why this post's fields cannot become a file name; set by check_names

    @property
    def artists(self) -> list[str]:
        return list(self.tags.get("artist", []))

    @property
    def all_tags(self) -> list[str]:
        return [t for tags in self.tags.values() for t in tags]

    def filename(self, sample: bool = False) -> str:
        """md5.ext: the name every booru tool (and the md5 lookup) expects; sample-md5.ext for a
        sample, whose bytes are not the md5's."""
        if sample and self.sample_url:
            return f"{SAMPLE_PREFIX}{self.md5}.{self.sample_ext or self.ext}"
        return f"{self.md5}.{self.ext}"


def check_names(post: Post) -> Post:
    """Set `post.problem` when a field that becomes part of a file name is not what a booru sends."""
    if not post.file_url:
        return post  # never downloaded: its md5 is only a key for lookups
    if not MD5_RE.match(post.md5):
        post.problem = f"md5 {post.md5[:80]!r} is not 32 hex digits"
    elif post.ext not in FILE_TYPES:
        post.problem = f"file type {post.ext[:80]!r} is not one of {', '.join(sorted(FILE_TYPES))}"
    elif post.sample_url and post.sample_ext and post.sample_ext not in FILE_TYPES:
        post.problem = f"sample file type {post.sample_ext[:80]!r} is not one of {', '.join(sorted(FILE_TYPES))}"
    return post


class Booru:
    """One booru site: search by query (paged by id cursor) and look up posts by md5."""

    site: str = "booru"
    page_size: int = 100
    max_pages: int = 750  # numbered pages a site serves (e621: 750)
    # e621 caps an md5: search at 100 values (until April 2026; its older mirrors still do).
    md5_batch: int = 100

    def __init__(self, client: BooruClient):
        self.client = client
        self.notes: list[str] = []  # things the user should know (e.g. a query cut for anonymous users)

    def fetch_page(self, tags: str, page: str | None, limit: int) -> list[Post]:
        """One page: `page` is None (the first), "b<id>" (posts before id) or a page number."""
        raise NotImplementedError

    def search(self, query: str) -> Iterator[list[Post]]:
        """Pages of posts matching `query` until the booru has no more."""
        return self.pages(query)

    def pages(self, query: str, first: list[Post] | None = None) -> Iterator[list[Post]]:
        # The id cursor is exact and cheap for the server, but only for the default newest-first
        # order; with an order: metatag only numbered pages keep the order the user asked for.
        numbered = any(t.lower().startswith("order:") for t in query.split())
        page_no, before = 1, None
        posts = first if first is not None else self.fetch_page(query, None, self.page_size)
        while posts:
            yield posts
            if len(posts) < self.page_size:
                return
            if numbered:
                page_no += 1
                if page_no > self.max_pages:
                    self.notes.append(f"{self.site} serves at most {self.max_pages} numbered pages; stopped there.")
                    return
                cursor = str(page_no)
            else:
                lowest = min(p.id for p in posts)
                if before is not None and lowest >= before:
                    raise NetworkError(
                        f"{self.site} returned a page that does not go back in time (id {lowest}); stopping."
                    )
                before = lowest
                cursor = f"b{lowest}"
            posts = self.fetch_page(query, cursor, self.page_size)

    def lookup_md5(self, md5s: list[str]) -> dict[str, Post]:
        """Posts for these md5s (a few requests of `md5_batch` md5s each, not one per file)."""
        found: dict[str, Post] = {}
        unique = sorted({m.lower() for m in md5s})
        for start in range(0, len(unique), self.md5_batch):
            self._lookup_batch(unique[start : start + self.md5_batch], found)
        return found

    def _lookup_batch(self, md5s: list[str], found: dict[str, Post]) -> None:
        try:
            posts = self.fetch_page(self.md5_query(md5s), None, self.page_size)
        except HTTPStatusError as e:
            # 414: the URL is too long for this server (or a proxy before it); halves get through.
            if e.status != 414 or len(md5s) < 2:
                raise
            half = len(md5s) // 2
            self._lookup_batch(md5s[:half], found)
            self._lookup_batch(md5s[half:], found)
            return
        for post in posts:
            if post.md5:
                found[post.md5.lower()] = post

    def md5_query(self, md5s: list[str]) -> str:
        # Without status:any the sites hide posts deleted since the file was downloaded.
        return "md5:" + ",".join(md5s) + " status:any"


def as_int(value, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def ext_of(url: str | None) -> str | None:
    if not url:
        return None
    name = url.split("?", 1)[0].rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else None
