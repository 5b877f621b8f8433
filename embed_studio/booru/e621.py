"""e621's posts API (and its e926/self-hosted twins) turned into normalised Posts."""

from __future__ import annotations

from typing import Any

from embed_studio.booru.post import RATING_NAMES, Booru, Post, as_int, check_names, ext_of
from embed_studio.errors import NetworkError

E621_URL = "https://e621.net"
E621_CATEGORIES = (
    "general", "species", "character", "copyright", "artist", "contributor", "invalid", "meta", "lore",
)  # fmt: skip


class E621(Booru):
    site = "e621"
    page_size = 320  # e621's maximum per request

    def fetch_page(self, tags: str, page: str | None, limit: int) -> list[Post]:
        params: dict[str, Any] = {"tags": tags, "limit": limit}
        if page is not None:
            params["page"] = page
        body = self.client.get_json("posts.json", params)
        if not isinstance(body, dict) or not isinstance(body.get("posts"), list):
            raise NetworkError(
                f"{self.site} answered the search with JSON of an unexpected shape (no 'posts' list). "
                "Check the server URL points at an e621-compatible site."
            )
        return [p for p in (parse_post(raw) for raw in body["posts"]) if p is not None]


def parse_post(raw: Any) -> Post | None:
    """One post of /posts.json; None for an entry too broken to use."""
    if not isinstance(raw, dict) or as_int(raw.get("id")) is None:
        return None
    file = raw.get("file") if isinstance(raw.get("file"), dict) else {}
    sample = raw.get("sample") if isinstance(raw.get("sample"), dict) else {}
    # No md5 only happens for posts hidden from this user: kept (without a file URL) so they are counted.
    md5 = str(file.get("md5") or "").lower()
    raw_tags = raw.get("tags") if isinstance(raw.get("tags"), dict) else {}
    tags = {cat: [str(t) for t in raw_tags.get(cat) or [] if t] for cat in E621_CATEGORIES}
    flags = raw.get("flags") if isinstance(raw.get("flags"), dict) else {}
    score = raw.get("score")
    rating = str(raw.get("rating") or "")
    file_url = file.get("url") if isinstance(file.get("url"), str) else None
    sample_url = sample.get("url") if sample.get("has", True) and isinstance(sample.get("url"), str) else None
    post = Post(
        id=int(raw["id"]),
        md5=md5,
        ext=str(file.get("ext") or ext_of(file_url) or "jpg").lower(),
        file_url=(file_url or None) if md5 else None,
        size=as_int(file.get("size")),
        width=as_int(file.get("width")),
        height=as_int(file.get("height")),
        sample_url=sample_url or None,
        sample_ext=ext_of(sample_url),
        tags=tags,
        rating=rating,
        # e621's "s" is "safe"; its models were trained on the words safe/questionable/explicit.
        rating_name=RATING_NAMES.get(rating, rating),
        score=as_int(score.get("total") if isinstance(score, dict) else score, 0) or 0,
        deleted=bool(flags.get("deleted")),
    )
    return check_names(post)
