"""A polite booru HTTP session: a named User-Agent, optional login, a rate limiter and backoff."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from embed_studio import __version__
from embed_studio.errors import Cancelled, NetworkError

PROJECT = "EmbedStudio"
# Answers that mean "slow down" or "try again shortly"; everything else 4xx is final.
RETRY_STATUS = frozenset({429, 502, 503, 504, 520, 521, 522, 524})
# e621's hard limit is 2 requests a second; no user setting goes below it.
MIN_INTERVAL = 0.5


class HTTPStatusError(NetworkError):
    """The server answered with an error status; `status` lets callers react to one (414, 422)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def origin(url: str) -> tuple[str, str, int | None]:
    """scheme, host and port (the default one filled in): what must match before a login is sent."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def user_agent(site: str, username: str = "") -> str:
    """The User-Agent e621 asks for: project, version and the user's account name."""
    who = f"by {username} on {site}" if username.strip() else "Embed Studio WebUI extension; no account given"
    return f"{PROJECT}/{__version__} ({who})"


class RateLimiter:
    """Spaces out the start of requests by at least `min_interval` seconds, across threads.

    The clock and sleep are injectable so tests check the spacing without waiting on it.
    """

    def __init__(
        self,
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.min_interval = max(0.0, float(min_interval))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_at: float | None = None

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            if self._next_at is not None and now < self._next_at:
                self._sleep(self._next_at - now)
                now = self._clock()
            self._next_at = now + self.min_interval


@dataclass
class ClientConfig:
    """How to talk to one booru; the defaults are the polite ones for the public sites."""

    base_url: str
    site: str = "e621"  # used in the User-Agent and in messages
    username: str = ""
    api_key: str = ""
    user_agent: str | None = None  # None: built from the project, version and username
    min_interval: float = 1.0  # seconds between API requests (e621 asks for at most 2/s; we do 1/s)
    max_retries: int = 4
    backoff: float = 2.0  # first wait after a 429/503 or a dropped connection, doubled each retry
    max_backoff: float = 60.0
    timeout: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def resolved_user_agent(self) -> str:
        return user_agent(self.site, self.username) if self.user_agent is None else self.user_agent


class BooruClient:
    """GET JSON from the API (rate limited) and stream files, retrying what is worth retrying."""

    def __init__(self, config: ClientConfig, cancelled: Callable[[], bool] | None = None):
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.limiter = RateLimiter(config.min_interval, config.clock, config.sleep)
        self._cancelled = cancelled or (lambda: False)
        # requests.Session is not thread-safe: each download thread gets its own.
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self.requests_made = 0

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # An empty User-Agent is sent as none at all (requests drops None-valued headers).
            session.headers["User-Agent"] = self.config.resolved_user_agent() or None
            # No session.auth: that would send the login to every host (file CDNs, a tag list URL).
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def __enter__(self) -> BooruClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def authenticated(self) -> bool:
        return bool(self.config.username and self.config.api_key)

    def auth_for(self, url: str) -> tuple[str, str] | None:
        """The login, only for the booru's own API host (same scheme, host and port)."""
        if self.authenticated and origin(url) == origin(self.base_url):
            return (self.config.username, self.config.api_key)
        return None

    # -- requests ------------------------------------------------------------------------
    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET base_url/path as JSON; raises NetworkError with a message saying what to do."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        response = self._request(url, params=params, limited=True)
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError) as e:
            snippet = response.text[:120].replace("\n", " ")
            raise NetworkError(
                f"{self.config.site} answered {url} with something that is not JSON ({snippet!r}). "
                "The site may be down or behind a captcha/maintenance page; try again later or check the server URL."
            ) from e
        finally:
            response.close()

    def stream(self, url: str, limited: bool = False) -> requests.Response:
        """Open a streaming GET for a file; the caller reads and closes it."""
        return self._request(url, stream=True, limited=limited)

    def _request(
        self, url: str, *, params: dict[str, Any] | None = None, stream: bool = False, limited: bool
    ) -> requests.Response:
        cfg = self.config
        attempt = 0
        while True:
            if self._cancelled():
                raise Cancelled("Cancelled by the user.")
            if limited:
                self.limiter.wait()
            with self._sessions_lock:
                self.requests_made += 1
            try:
                response = self.session.get(
                    url, params=params, timeout=cfg.timeout, stream=stream, auth=self.auth_for(url)
                )
            except (requests.ConnectionError, requests.Timeout) as e:
                if attempt >= cfg.max_retries:
                    raise NetworkError(
                        f"Could not reach {cfg.site} at {url} ({type(e).__name__}). "
                        "Check your internet connection and the server URL, then retry."
                    ) from e
                self._backoff(attempt, None)
                attempt += 1
                continue
            if response.status_code in RETRY_STATUS and attempt < cfg.max_retries:
                retry_after = response.headers.get("Retry-After")
                response.close()
                self._backoff(attempt, retry_after)
                attempt += 1
                continue
            if response.status_code >= 400:
                message = self._error_message(response, url)
                response.close()
                raise HTTPStatusError(message, response.status_code)
            return response

    def _backoff(self, attempt: int, retry_after: str | None) -> None:
        delay = self.config.backoff * (2**attempt)
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass  # an HTTP date: the exponential delay is good enough
        self.config.sleep(min(delay, self.config.max_backoff))

    def _error_message(self, response: requests.Response, url: str) -> str:
        site, status = self.config.site, response.status_code
        detail = _server_reason(response)
        detail = f": {detail}" if detail else ""
        if status in RETRY_STATUS:
            return (
                f"{site} kept answering {status} (busy or rate limited) after {self.config.max_retries} retries{detail}. "
                "Wait a few minutes and run the fetch again; files already downloaded are kept."
            )
        if status == 401:
            return f"{site} rejected the login (401){detail}. Check your user name and API key (not your password)."
        if status == 403:
            return (
                f"{site} refused the request (403 Forbidden){detail}. {site} requires a User-Agent naming the "
                "project and your account: fill in your user name, and your API key if the search needs a login."
            )
        if status == 404:
            return f"{site} has no {url} (404). Check the server URL."
        if status == 422:
            return f"{site} rejected the search (422){detail}. Check the query syntax."
        return f"{site} answered {status} for {url}{detail}."


def _server_reason(response: requests.Response) -> str:
    """The booru's own explanation, when its error body is JSON with a message/reason."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        for key in ("message", "reason", "error"):
            if isinstance(body.get(key), str):
                return body[key]
    return ""
