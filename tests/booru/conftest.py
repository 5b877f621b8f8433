"""Fixtures for the booru tests: the fake booru server and a recording sleep."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("es_tests_fake_booru", Path(__file__).with_name("fake_booru.py"))
fake_booru = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fake_booru  # dataclasses look their module up by name
_spec.loader.exec_module(fake_booru)
_spec = importlib.util.spec_from_file_location("es_tests_hostile_booru", Path(__file__).with_name("hostile_booru.py"))
hostile_booru = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = hostile_booru
_spec.loader.exec_module(hostile_booru)


@pytest.fixture
def fb():
    """The fake_booru module (FakeBooru, FakePost, make_posts, image_bytes)."""
    return fake_booru


@pytest.fixture
def booru_server():
    """booru_server(posts, flavor="e621", rate_interval=0.0) -> a started FakeBooru."""
    started = []

    def _start(posts, flavor: str = "e621", rate_interval: float = 0.0):
        server = fake_booru.FakeBooru(posts, flavor=flavor, rate_interval=rate_interval).start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture
def hb():
    """The hostile_booru module (HostileBooru, file_requests)."""
    return hostile_booru


@pytest.fixture
def hostile_server():
    """hostile_server(posts, flavor="e621") -> a started HostileBooru."""
    started = []

    def _start(posts, flavor: str = "e621"):
        server = hostile_booru.HostileBooru(posts, flavor=flavor).start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


class RecordingSleep:
    """A sleep that records what it was asked and returns at once (backoff without waiting)."""

    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def no_sleep():
    return RecordingSleep()
