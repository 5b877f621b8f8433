"""Danbooru's posts API turned into normalised Posts, with its 2-tag limit for anonymous users."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from embed_studio.booru.client import HTTPStatusError
from embed_studio.booru.post import Booru, Post, as_int, check_names, ext_of
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
# Metatags Danbooru does not count toward that limit (its PostQuery::UNLIMITED_METATAGS).
# order: is not among them: it counts like a tag.
FREE_METATAGS = frozenset(
    {
        "status", "rating", "limit", "is", "id", "date", "age", "filesize", "filetype", "parent", "child", "md5",
        "width", "height", "duration", "mpixels", "ratio", "score", "upvote", "downvotes", "favcount", "embedded",
        "tagcount", "pixiv_id", "pixiv",
    }
)  # fmt: skip
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
        if len(counted_terms(terms)) <= SERVER_TAG_LIMIT:
            yield from super().search(query)
            return
        if self.client.authenticated:
            try:
                first = self.fetch_page(query, None, self.page_size)
            except HTTPStatusError as e:
                if e.status != 422:
                    raise
            else:
                # The account may search all the tags: go on with the whole query on the server.
                yield from self.pages(query, first=first)
                return
        server, local = split_query(terms)
        keep = local_matcher(local, self.tag_aliases(local))
        self.notes.append(
            f"Danbooru lets anonymous users and basic accounts search {SERVER_TAG_LIMIT} tags at a time: "
            f"searched {' '.join(server)!r} on the server and filtered {' '.join(local)!r} here. "
            "Results are the same, but pages with few matches take longer; a Gold account searches them all at once."
        )
        for page in super().search(" ".join(server)):
            yield [p for p in page if keep(p)]

    def tag_aliases(self, terms: list[str]) -> dict[str, str]:
        """The site's active aliases (old name -> tag) of the plain tags among `terms`: a post is
        tagged with the tag, never with its alias, so a local check must look for the tag."""
        names = sorted({t.lstrip("-").lower() for t in terms if _local_check(t) is not None and ":" not in t})
        if not names:
            return {}
        params = {"search[antecedent_name_comma]": ",".join(names), "search[status]": "active", "limit": 1000}
        try:
            body = self.client.get_json("tag_aliases.json", params)
        except NetworkError as e:
            # A mirror without the aliases API still searches; the user learns the filter is literal.
            self.notes.append(f"Could not read danbooru's tag aliases, so tags were filtered here as typed: {e}")
            return {}
        aliases: dict[str, str] = {}
        for row in body if isinstance(body, list) else []:
            if isinstance(row, dict) and isinstance(row.get("antecedent_name"), str):
                if isinstance(row.get("consequent_name"), str) and row["consequent_name"].strip():
                    aliases[row["antecedent_name"].lower()] = row["consequent_name"].strip().lower()
        return aliases


def _metatag(term: str) -> str:
    body = term.lstrip("-~")
    return body.split(":", 1)[0].lower() if ":" in body else ""


def counted_terms(terms: list[str]) -> list[str]:
    """The terms Danbooru counts toward its tag limit: all but its free metatags."""
    return [t for t in terms if _metatag(t) not in FREE_METATAGS]


def split_query(terms: list[str]) -> tuple[list[str], list[str]]:
    """Pick the terms Danbooru searches (free metatags, then positive plain tags first) and those we
    check locally."""
    counted = counted_terms(terms)
    local_ok = [t for t in counted if _local_check(t) is not None]
    server_only = [t for t in counted if _local_check(t) is None]
    if len(server_only) > SERVER_TAG_LIMIT:
        raise UserInputError(
            f"Danbooru lets anonymous users search {SERVER_TAG_LIMIT} tags at a time, and "
            f"{', '.join(server_only)} can only be searched on the server. Remove some of them, or enter your "
            "Danbooru user name and API key (a Gold account searches more tags)."
        )
    positive = [t for t in local_ok if not t.startswith("-")]
    others = [t for t in local_ok if t not in positive]
    chosen = set(server_only + (positive + others)[: SERVER_TAG_LIMIT - len(server_only)])
    server = [t for t in terms if t in chosen or t not in counted]
    local = [t for t in terms if t not in server]
    return server, local


def local_matcher(terms: list[str], aliases: dict[str, str] | None = None) -> Callable[[Post], bool]:
    checks = [_local_check(t, aliases) for t in terms]
    return lambda post: all(check(post) for check in checks if check)


def _local_check(term: str, aliases: dict[str, str] | None = None) -> Callable[[Post], bool] | None:
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
        return None  # order:, user:, pool:... only the server knows
    else:
        tag = (aliases or {}).get(lower, lower)
        check = lambda p: tag in p.all_tags  # noqa: E731
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
    file_url = _url(raw.get("file_url")) if md5 else None
    sample_url = _url(raw.get("large_file_url"))
    if sample_url == file_url:
        sample_url = None
    post = Post(
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
        # Banned posts are taken down at the artist's request: skipped like deleted ones.
        deleted=bool(raw.get("is_deleted") or raw.get("is_banned")),
    )
    return check_names(post)


def _url(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
