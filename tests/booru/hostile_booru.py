"""A booru on 127.0.0.1 that does what a compromised or careless server could: the fake booru
(fake_booru.py) plus path-shaped md5s and extensions, bodies far larger than announced, the
sites' own limits on md5 look-ups (100 values, deleted posts hidden without status:any, 414 for
long URLs), and Danbooru serving deleted and banned posts' files.

Loaded by conftest.py next to fake_booru (whose module it extends by name).
"""

from __future__ import annotations

import sys
from urllib.parse import urlparse

fake_booru = sys.modules["es_tests_fake_booru"]

JUNK = b"\0" * (64 * 1024)


class HostileBooru(fake_booru.FakeBooru):
    def __init__(self, posts, flavor: str = "e621", rate_interval: float = 0.0):
        super().__init__(posts, flavor=flavor, rate_interval=rate_interval)
        self.overrides: dict[int, dict] = {}  # post id -> {"file.md5": ...}: fields of its JSON replaced
        self.oversize: dict[str, int] = {}  # md5 -> bytes streamed for its file (no Content-Length)
        self.sent: dict[str, list[int]] = {}  # md5 -> bytes written per request, until the client hung up
        self.md5_cap = 100  # e621 uses only this many values of md5:a,b,...
        self.hide_deleted = True  # like both sites: deleted posts only with status:any / status:deleted
        self.max_uri: int | None = None  # longer request URIs get 414
        self.deleted_files_served = False  # Danbooru: deleted and banned posts keep their file URLs

    # -- the API -----------------------------------------------------------------------------
    def _api(self, h, req) -> None:
        if self.max_uri is not None and len(h.path) > self.max_uri:
            return self._send(h, req, 414, b"<html>414 Request-URI Too Large</html>", "text/html")
        return super()._api(h, req)

    def _matches(self, post, terms: list[str]) -> bool:
        if self.hide_deleted and post.deleted and not any(t in ("status:any", "status:deleted") for t in terms):
            return False
        capped = []
        for term in terms:
            if term.startswith("md5:"):
                term = "md5:" + ",".join(term[4:].split(",")[: self.md5_cap])
            capped.append(term)
        return super()._matches(post, capped)

    def _post_json(self, p) -> dict:
        if self.deleted_files_served and self.flavor == "danbooru" and (p.deleted or p.banned):
            deleted, p.deleted = p.deleted, False
            try:
                body = super()._post_json(p)
            finally:
                p.deleted = deleted
            body["is_deleted"] = p.deleted
        else:
            body = super()._post_json(p)
        for dotted, value in self.overrides.get(p.id, {}).items():
            target = body
            *parents, key = dotted.split(".")
            for part in parents:
                target = target[part]
            target[key] = value
        return body

    # -- files -------------------------------------------------------------------------------
    def _file(self, h, req, path: str) -> None:
        md5 = path.rsplit("/", 1)[-1].split(".", 1)[0]
        if md5 in self.oversize:
            return self._stream_junk(h, req, md5, self.oversize[md5])
        post = next((p for p in self.posts if p.md5 == md5), None)
        if self.deleted_files_served and post is not None and (post.deleted or post.banned):
            return self._send(h, req, 200, post.data, "application/octet-stream")
        return super()._file(h, req, path)

    def _stream_junk(self, h, req, md5: str, total: int) -> None:
        req.status = 200
        sent = 0
        with self._lock:
            self.sent.setdefault(md5, []).append(0)
            slot = len(self.sent[md5]) - 1
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Connection", "close")  # no Content-Length: the body ends when the server closes
        h.end_headers()
        h.close_connection = True
        try:
            while sent < total:
                chunk = JUNK[: total - sent]
                h.wfile.write(chunk)
                sent += len(chunk)
                with self._lock:
                    self.sent[md5][slot] = sent
        except OSError:
            pass  # the client hung up: what it did not read was never sent


def file_requests(server, md5: str) -> list:
    return [r for r in server.requests if urlparse(r.path).path.startswith("/data/") and md5 in r.path]
