"""The booru-neutral post record and the interface every booru site implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from embed_studio.booru.client import BooruClient
from embed_studio.errors import NetworkError

CATEGORIES = ("general", "species", "character", "copyright", "artist", "meta", "lore", "invalid")
RATING_NAMES = {"g": "general", "s": "safe", "q": "questionable", "e": "explicit"}


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
    deleted: bool = False

    @property
    def artists(self) -> list[str]:
        return list(self.tags.get("artist", []))

    @property
    def all_tags(self) -> list[str]:
        return [t for tags in self.tags.values() for t in tags]

    def filename(self, sample: bool = False) -> str:
        """md5.ext: the name every booru tool (and the md5 lookup) expects."""
        ext = self.sample_ext if sample and self.sample_url and self.sample_ext else self.ext
        return f"{self.md5}.{ext}"


class Booru:
    """One booru site: search by query (paged by id cursor) and look up posts by md5."""

    site: str = "booru"
    page_size: int = 100
    max_pages: int = 750  # numbered pages a site serves (e621: 750)

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
        """Posts for these md5s (a few requests of `page_size` md5s each, not one per file)."""
        found: dict[str, Post] = {}
        unique = sorted({m.lower() for m in md5s})
        for start in range(0, len(unique), self.page_size):
            chunk = unique[start : start + self.page_size]
            for post in self.fetch_page(self.md5_query(chunk), None, self.page_size):
                if post.md5:
                    found[post.md5.lower()] = post
        return found

    def md5_query(self, md5s: list[str]) -> str:
        return "md5:" + ",".join(md5s)


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
