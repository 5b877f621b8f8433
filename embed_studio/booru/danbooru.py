"""Danbooru's posts API turned into normalised Posts, with its 2-tag limit for anonymous users."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from embed_studio.booru.post import Booru, Post, as_int, ext_of
from embed_studio.errors import NetworkError, UserInputError

DANBOORU_URL = "https://danbooru.donmai.us"
DANBOORU_RATINGS = {"g": "general", "s": "sensitive", "q": "questionable", "e": "explicit"}
# Danbooru's tag_string_* fields, by our category names.
DANBOORU_FIELDS = {
    "general": "tag_string_general",
    "character": "tag_string_character",
    "copyright": "tag_string_copyright",
    "artist": "tag_string_artist",
    "meta": "tag_string_meta",
}
SERVER_TAG_LIMIT = 2  # what Danbooru allows anonymous users and basic members
_SCORE = re.compile(r"^score:(>=|<=|>|<|=)?(-?\d+)$")


class Danbooru(Booru):
    site = "danbooru"
    page_size = 200  # Danbooru's maximum per request
    max_pages = 1000

    def fetch_page(self, tags: str, page: str | None, limit: int) -> list[Post]:
        params: dict[str, Any] = {"tags": tags, "limit": limit}
        if page is not None:
            params["page"] = page
        body = self.client.get_json("posts.json", params)
        if not isinstance(body, list):
            reason = body.get("message") if isinstance(body, dict) else None
            raise NetworkError(
                f"danbooru answered the search with JSON of an unexpected shape (not a list of posts)"
                f"{': ' + reason if reason else ''}. Check the server URL points at a Danbooru-compatible site."
            )
        return [p for p in (parse_post(raw) for raw in body) if p is not None]

    def search(self, query: str) -> Iterator[list[Post]]:
        terms = query.split()
        if len(terms) <= SERVER_TAG_LIMIT:
            yield from super().search(query)
            return
        if self.client.authenticated:
            try:
                first = self.fetch_page(query, None, self.page_size)
            except NetworkError as e:
                if "422" not in str(e):
                    raise
            else:
                # The account may search all the tags: go on with the whole query on the server.
                yield from self.pages(query, first=first)
                return
        server, local = split_query(terms)
        keep = local_matcher(local)
        self.notes.append(
            f"Danbooru lets anonymous users and basic accounts search {SERVER_TAG_LIMIT} tags at a time: "
            f"searched {' '.join(server)!r} on the server and filtered {' '.join(local)!r} here. "
            "Results are the same, but pages with few matches take longer; a Gold account searches them all at once."
        )
        for page in super().search(" ".join(server)):
            yield [p for p in page if keep(p)]


def split_query(terms: list[str]) -> tuple[list[str], list[str]]:
    """Pick the terms Danbooru searches (positive plain tags first) and those we check locally."""
    local_ok = [t for t in terms if _local_check(t) is not None]
    server_only = [t for t in terms if _local_check(t) is None]
    if len(server_only) > SERVER_TAG_LIMIT:
        raise UserInputError(
            f"Danbooru lets anonymous users search {SERVER_TAG_LIMIT} tags at a time, and "
            f"{', '.join(server_only)} can only be searched on the server. Remove some of them, or enter your "
            "Danbooru user name and API key (a Gold account searches more tags)."
        )
    positive = [t for t in local_ok if not t.startswith("-") and ":" not in t]
    others = [t for t in local_ok if t not in positive]
    server = server_only + (positive + others)[: SERVER_TAG_LIMIT - len(server_only)]
    local = [t for t in terms if t not in server]
    return server, local


def local_matcher(terms: list[str]) -> Callable[[Post], bool]:
    checks = [_local_check(t) for t in terms]
    return lambda post: all(check(post) for check in checks if check)


def _local_check(term: str) -> Callable[[Post], bool] | None:
    """A predicate for a term we can evaluate on a post's JSON; None if only the server can."""
    negate = term.startswith("-")
    body = term[1:] if negate else term
    if not body or any(c in body for c in "*~()") or term.startswith("~"):
        return None
    lower = body.lower()
    if lower.startswith("rating:"):
        wanted = {r[:1] for r in lower[len("rating:") :].split(",") if r}
        check = lambda p: p.rating[:1] in wanted  # noqa: E731
    elif m := _SCORE.match(lower):
        op, value = m.group(1) or "=", int(m.group(2))
        ops = {">": int.__gt__, "<": int.__lt__, ">=": int.__ge__, "<=": int.__le__, "=": int.__eq__}
        check = lambda p: ops[op](p.score, value)  # noqa: E731
    elif ":" in lower:
        return None  # order:, status:, user:... only the server knows
    else:
        check = lambda p: lower in p.all_tags  # noqa: E731
    return (lambda p: not check(p)) if negate else check


def parse_post(raw: Any) -> Post | None:
    """One post of /posts.json; None for an entry too broken to use.

    Danbooru leaves out md5 and file URLs of posts this user may not see: those are kept, without
    a file URL, so the fetch counts them as hidden."""
    if not isinstance(raw, dict) or as_int(raw.get("id")) is None:
        return None
    md5 = str(raw.get("md5") or "").lower()
    tags = {cat: str(raw.get(key) or "").split() for cat, key in DANBOORU_FIELDS.items()}
    rating = str(raw.get("rating") or "")
    file_url = (raw.get("file_url") or None) if md5 else None
    sample_url = raw.get("large_file_url") or None
    if sample_url == file_url:
        sample_url = None
    return Post(
        id=int(raw["id"]),
        md5=md5,
        ext=str(raw.get("file_ext") or ext_of(file_url) or "jpg").lower(),
        file_url=file_url,
        size=as_int(raw.get("file_size")),
        width=as_int(raw.get("image_width")),
        height=as_int(raw.get("image_height")),
        sample_url=sample_url,
        sample_ext=ext_of(sample_url),
        tags=tags,
        rating=rating,
        rating_name=DANBOORU_RATINGS.get(rating, rating),
        score=as_int(raw.get("score"), 0) or 0,
        deleted=bool(raw.get("is_deleted")),
    )
