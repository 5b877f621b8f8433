"""Fixtures for the tagger tests: tiny ONNX taggers and a folder of coloured images."""

from __future__ import annotations

import hashlib
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from embed_studio.tagger import model as tagger_model

# Tests import the model builder by name (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))
from tagger_test_models import BLUE, GREEN, RED, build_tagger  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_models():
    """Each test loads its own sessions, so session.run counts start at zero."""
    tagger_model.unload_models()
    yield
    tagger_model.unload_models()


@pytest.fixture
def tiny_tagger(tmp_path):

    return build_tagger(tmp_path / "models" / "tiny-wd")


@pytest.fixture
def dataset(tmp_path, make_image):
    folder = tmp_path / "data"
    make_image("red.png", size=(40, 24), color=RED, folder=folder)
    make_image("green.jpg", size=(24, 40), color=GREEN, folder=folder)
    make_image("blue.webp", size=(32, 32), color=BLUE, folder=folder)
    return folder


@pytest.fixture
def fake_hub(tmp_path):
    """Serves /<repo>/resolve/<rev>/<file> from a folder, with the headers hf_hub_download reads."""
    source = build_tagger(tmp_path / "hub-files").folder
    requests: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            requests.append((self.command, self.path))
            path = source / self.path.rsplit("/", 1)[-1]
            if "/resolve/" not in self.path or not path.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", "0" * 40)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self):
            self._answer(False)

        def do_GET(self):
            self._answer(True)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()
