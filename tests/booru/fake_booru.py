"""A booru HTTP server on 127.0.0.1 that behaves like e621/Danbooru for the tests.

It pages with the b<id> cursor, answers 503 when requests come faster than its rate limit,
refuses requests without a User-Agent (403), lists deleted/hidden posts without a file URL,
and can cut a download off half-way, serve bytes that do not match the md5, or send broken
JSON. Every request is recorded (time, path, query, headers) so tests check politeness.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from PIL import Image


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (24, 16)) -> bytes:
    """A small, distinct, valid image for post `seed`."""
    color = (seed % 256, (seed // 256) % 256, (seed // 65536) % 256)  # distinct per seed, so md5s differ
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


@dataclass
class FakePost:
    id: int
    data: bytes
    ext: str = "png"
    tags: dict[str, list[str]] = field(default_factory=dict)
    rating: str = "s"
    score: int = 10
    deleted: bool = False  # e621: no file URL, flags.deleted
    hidden: bool = False  # no file URL, not deleted (hidden from anonymous users)
    banned: bool = False  # Danbooru: is_banned (taken down at the artist's request)
    sample: bytes | None = None

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()

    @property
    def all_tags(self) -> set[str]:
        return {t for tags in self.tags.values() for t in tags}


@dataclass
class Request:
    time: float
    path: str
    query: dict[str, str]
    user_agent: str | None
    authorization: str | None
    status: int = 0


# Danbooru's metatags that do not count toward its 2-tag limit (PostQuery::UNLIMITED_METATAGS).
FREE_METATAGS = {
    "status", "rating", "limit", "is", "id", "date", "age", "filesize", "filetype", "parent", "child", "md5",
    "width", "height", "duration", "mpixels", "ratio", "score", "upvote", "downvotes", "favcount", "embedded",
    "tagcount", "pixiv_id", "pixiv",
}  # fmt: skip


def counted_terms(terms: list[str]) -> list[str]:
    return [t for t in terms if ":" not in t or t.lstrip("-~").split(":", 1)[0].lower() not in FREE_METATAGS]


def make_posts(n: int, start_id: int = 1000, **kwargs) -> list[FakePost]:
    """n posts with descending ids, each with its own image and a few e621-style tags."""
    posts = []
    for i in range(n):
        pid = start_id - i
        tags = {
            "general": ["solo", "smile", "red_eyes" if i % 2 else "blue_eyes"],
            "species": ["zangoose"],
            "character": ["zack_(character)"],
            "copyright": ["pokemon"],
            "artist": ["some_artist", "conditional_dnp"],
            "meta": ["hi_res"],
            "lore": [],
            "invalid": [],
        }
        posts.append(FakePost(id=pid, data=image_bytes(pid), tags=tags, rating="seq"[i % 3], **kwargs))
    return posts


class FakeBooru:
    """Start with .start(); .url is the base URL. flavor is "e621" or "danbooru"."""

    def __init__(self, posts: list[FakePost], flavor: str = "e621", rate_interval: float = 0.0):
        self.posts = sorted(posts, key=lambda p: -p.id)
        self.flavor = flavor
        self.rate_interval = rate_interval  # API requests closer than this get 503
        self.page_max = 320 if flavor == "e621" else 200
        self.requests: list[Request] = []
        self.fail_next: list[int] = []  # statuses to answer the next API requests with
        self.cut_off: set[str] = set()  # md5s whose download stops half-way
        self.hold: set[str] = set()  # md5s whose download sends half, sets `held`, and waits for `release`
        self.held = threading.Event()
        self.release = threading.Event()
        self.corrupt: set[str] = set()  # md5s served with other bytes
        self.malformed_json = False
        self.extra_files: dict[str, bytes] = {}  # path -> bytes (e.g. a tag list)
        self.file_host: str | None = None  # another server's URL that serves the files (a CDN)
        self.aliases: dict[str, str] = {}  # Danbooru tag aliases: old name -> tag
        self._last_api: float | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeBooru:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                fake._handle(self)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def api_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("posts.json")]

    def file_url(self, post: FakePost) -> str:
        return f"{self.file_host or self.url}/data/{post.md5}.{post.ext}"

    # -- handling ------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        req = Request(time.monotonic(), parsed.path, query, h.headers.get("User-Agent"), h.headers.get("Authorization"))
        with self._lock:
            self.requests.append(req)
        ua = req.user_agent or ""
        if not ua or ua.startswith(("python-requests", "python-urllib3")):  # e621 refuses generic agents too
            return self._send(
                h,
                req,
                403,
                json.dumps({"success": False, "reason": "A User-Agent naming your project is required"}).encode(),
            )
        if parsed.path == "/posts.json":
            return self._api(h, req)
        if parsed.path == "/tag_aliases.json" and self.flavor == "danbooru":
            names = req.query.get("search[antecedent_name_comma]", "").split(",")
            rows = [{"antecedent_name": n, "consequent_name": self.aliases[n], "status": "active"}
                    for n in names if n in self.aliases]  # fmt: skip
            return self._send(h, req, 200, json.dumps(rows).encode())
        if parsed.path in self.extra_files:
            return self._send(h, req, 200, self.extra_files[parsed.path], "text/csv")
        if parsed.path.startswith("/data/"):
            return self._file(h, req, parsed.path)
        return self._send(h, req, 404, b'{"success": false, "reason": "not found"}')

    def _api(self, h, req: Request) -> None:
        with self._lock:
            now = req.time
            too_fast = self.rate_interval and self._last_api is not None and now - self._last_api < self.rate_interval
            self._last_api = now
            forced = self.fail_next.pop(0) if self.fail_next else None
        if forced:
            return self._send(h, req, forced, b'{"success": false, "reason": "forced failure"}')
        if too_fast:
            return self._send(h, req, 503, b"<html>Rate limited</html>", "text/html")
        if self.malformed_json:
            return self._send(h, req, 200, b'{"posts": [{"id": 1, "file": ', "application/json")
        terms = req.query.get("tags", "").split()
        if self.flavor == "danbooru" and len(counted_terms(terms)) > 2 and not req.authorization:
            body = {
                "success": False,
                "error": "PostQuery::TagLimitError",
                "message": "You cannot search for more than 2 tags at a time.",
            }
            return self._send(h, req, 422, json.dumps(body).encode())
        limit = min(int(req.query.get("limit", 75)), self.page_max)
        page = req.query.get("page", "")
        before = int(page[1:]) if page.startswith("b") else None
        offset = (int(page) - 1) * limit if page.isdigit() else 0
        matches = [p for p in self.posts if self._matches(p, terms) and (before is None or p.id < before)]
        if any(t == "order:score" for t in terms):
            matches.sort(key=lambda p: (-p.score, -p.id))
        shown = [self._post_json(p) for p in matches[offset : offset + limit]]
        body = {"posts": shown} if self.flavor == "e621" else shown
        self._send(h, req, 200, json.dumps(body).encode(), "application/json")

    def _matches(self, post: FakePost, terms: list[str]) -> bool:
        for term in terms:
            neg = term.startswith("-")
            body = term[1:] if neg else term
            if body.startswith("md5:"):
                ok = post.md5 in body[4:].split(",")
            elif body.startswith("rating:"):
                ok = post.rating == body[7:8]
            elif body.startswith("score:>"):
                ok = post.score > int(body[7:])
            elif ":" in body:
                ok = True  # order:, status: ... ignored
            else:
                ok = self.aliases.get(body, body) in post.all_tags
            if ok == neg:
                return False
        return True

    def _post_json(self, p: FakePost) -> dict:
        hidden = p.deleted or p.hidden
        url = None if hidden else self.file_url(p)
        sample_url = f"{self.file_host or self.url}/data/sample/{p.md5}.jpg" if p.sample and not hidden else None
        if self.flavor == "e621":
            return {
                "id": p.id,
                "file": {"url": url, "md5": p.md5, "ext": p.ext, "size": len(p.data), "width": 24, "height": 16},
                "sample": {"has": bool(sample_url), "url": sample_url, "width": 12, "height": 8},
                "tags": p.tags,
                "rating": p.rating,
                "score": {"up": p.score, "down": 0, "total": p.score},
                "flags": {"deleted": p.deleted},
            }
        danbooru = {
            "id": p.id,
            "md5": p.md5,
            "file_ext": p.ext,
            "file_url": url,
            "large_file_url": sample_url or url,
            "file_size": len(p.data),
            "image_width": 24,
            "image_height": 16,
            "rating": p.rating,
            "score": p.score,
            "is_deleted": p.deleted,
            "is_banned": p.banned,
            "tag_string_general": " ".join(p.tags.get("general", [])),
            "tag_string_character": " ".join(p.tags.get("character", [])),
            "tag_string_copyright": " ".join(p.tags.get("copyright", [])),
            "tag_string_artist": " ".join(p.tags.get("artist", [])),
            "tag_string_meta": " ".join(p.tags.get("meta", [])),
            "tag_string": " ".join(sorted(p.all_tags)),
        }
        if p.hidden:  # Danbooru leaves out the md5 and file URLs of posts this user may not see
            for key in ("md5", "file_url", "large_file_url"):
                danbooru.pop(key)
        return danbooru

    def _file(self, h, req: Request, path: str) -> None:
        name = path.rsplit("/", 1)[-1]
        md5 = name.split(".", 1)[0]
        post = next((p for p in self.posts if p.md5 == md5), None)
        if post is None or post.deleted or post.hidden:
            return self._send(h, req, 404, b"not found", "text/plain")
        if "/sample/" in path:
            return self._send(h, req, 200, post.sample or b"", "image/jpeg")
        data = post.data
        if md5 in self.corrupt:
            data = image_bytes(post.id + 99999)
        if md5 in self.hold:
            req.status = 200
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            self.held.set()
            self.release.wait(120)  # bounded: a test that never releases must not hang the server
            h.wfile.write(data[len(data) // 2 :])
            return
        if md5 in self.cut_off:
            req.status = 200
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        self._send(h, req, 200, data, "application/octet-stream")

    def _send(self, h, req: Request, status: int, body: bytes, ctype: str = "application/json") -> None:
        req.status = status
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
