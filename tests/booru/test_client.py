"""The HTTP client: User-Agent, login, rate limiter spacing, backoff on 429/503, clear errors."""

from __future__ import annotations

import base64

import pytest

from embed_studio import __version__
from embed_studio.booru.client import BooruClient, ClientConfig, RateLimiter, user_agent
from embed_studio.errors import NetworkError


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_spaces_requests_by_the_interval():
    clock = FakeClock()
    limiter = RateLimiter(1.0, clock=clock, sleep=clock.sleep)
    starts = []
    for advance in (0.0, 0.3, 0.0, 2.5):
        clock.now += advance
        limiter.wait()
        starts.append(clock.now)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g >= 1.0 for g in gaps), gaps
    assert clock.sleeps == pytest.approx([0.7, 1.0])  # the 2.5 s pause needed no wait


def test_user_agent_names_project_version_and_user():
    ua = user_agent("e621", "someone")
    assert ua == f"EmbedStudio/{__version__} (by someone on e621)"
    assert user_agent("e621", "").startswith(f"EmbedStudio/{__version__} (")


def test_requests_carry_user_agent_and_basic_auth(booru_server, fb):
    server = booru_server(fb.make_posts(2))
    client = BooruClient(ClientConfig(server.url, username="me", api_key="k3y", min_interval=0))
    body = client.get_json("posts.json", {"tags": "solo"})
    assert len(body["posts"]) == 2
    req = server.requests[-1]
    assert req.user_agent == f"EmbedStudio/{__version__} (by me on e621)"
    assert req.authorization == "Basic " + base64.b64encode(b"me:k3y").decode()


def test_server_limit_is_never_hit_with_the_client_interval(booru_server, fb):
    # The server answers 503 to requests closer than 50 ms; the client keeps 250 ms apart (a wide margin:
    # on a loaded machine the server may see two requests closer together than the client sent them).
    server = booru_server(fb.make_posts(1), rate_interval=0.05)
    client = BooruClient(ClientConfig(server.url, min_interval=0.25, max_retries=0))
    for _ in range(4):
        client.get_json("posts.json", {"tags": ""})
    times = [r.time for r in server.api_requests()]
    assert [r.status for r in server.api_requests()] == [200] * 4
    assert all(b - a >= 0.05 for a, b in zip(times, times[1:], strict=False))


def test_without_the_interval_the_server_limit_answers_503(booru_server, fb):
    # The same server, an impolite client: proves the test above could fail.
    server = booru_server(fb.make_posts(1), rate_interval=10.0)
    client = BooruClient(ClientConfig(server.url, min_interval=0, max_retries=0))
    client.get_json("posts.json", {"tags": ""})
    with pytest.raises(NetworkError, match="503"):
        client.get_json("posts.json", {"tags": ""})


def test_backoff_on_503_and_429_then_success(booru_server, fb, no_sleep):
    server = booru_server(fb.make_posts(1))
    server.fail_next = [503, 429]
    client = BooruClient(ClientConfig(server.url, min_interval=0, backoff=0.5, sleep=no_sleep))
    body = client.get_json("posts.json", {"tags": ""})
    assert len(body["posts"]) == 1
    assert [r.status for r in server.api_requests()] == [503, 429, 200]
    assert no_sleep.calls == [0.5, 1.0]


def test_gives_up_after_retries_with_a_clear_message(booru_server, fb, no_sleep):
    server = booru_server(fb.make_posts(1))
    server.fail_next = [503] * 10
    client = BooruClient(ClientConfig(server.url, min_interval=0, max_retries=2, sleep=no_sleep))
    with pytest.raises(NetworkError, match="kept answering 503.*run the fetch again"):
        client.get_json("posts.json", {"tags": ""})
    assert len(server.api_requests()) == 3


def test_missing_user_agent_is_refused_with_an_explanation(booru_server, fb):
    server = booru_server(fb.make_posts(1))
    client = BooruClient(ClientConfig(server.url, min_interval=0, user_agent=""))
    with pytest.raises(NetworkError, match="403.*User-Agent.*user name"):
        client.get_json("posts.json", {"tags": ""})
    # requests/urllib3 fill in their own generic agent, which e621 refuses like a missing one.
    assert not (server.requests[-1].user_agent or "").startswith("EmbedStudio")


def test_bad_login_and_malformed_json(booru_server, fb):
    server = booru_server(fb.make_posts(1))
    client = BooruClient(ClientConfig(server.url, min_interval=0, max_retries=0))
    server.fail_next = [401]
    with pytest.raises(NetworkError, match="API key"):
        client.get_json("posts.json", {"tags": ""})
    server.malformed_json = True
    with pytest.raises(NetworkError, match="not JSON"):
        client.get_json("posts.json", {"tags": ""})


def test_unreachable_server(no_sleep):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = BooruClient(ClientConfig(f"http://127.0.0.1:{port}", min_interval=0, max_retries=1, sleep=no_sleep))
    with pytest.raises(NetworkError, match="Could not reach"):
        client.get_json("posts.json")
    assert no_sleep.calls == [2.0]
