"""Fixtures for the UI tests: the trainer tests' tiny diffusers model (imported by path) and a small dataset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TINY_SD = Path(__file__).resolve().parents[1] / "train" / "tiny_sd.py"

CAPTIONS = ["1girl, solo, black hair", "1girl, smile, blue sky", "solo, red eyes, dress", "1girl, cat, smile"]
SIZES = [(64, 64), (96, 48), (48, 96), (80, 80)]  # mixed aspects: several buckets at a 64x64 area


def _tiny_sd_module():
    spec = importlib.util.spec_from_file_location("embed_studio_tests_tiny_sd", TINY_SD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return _tiny_sd_module().build_tiny_sd(tmp_path_factory.mktemp("ui-tiny-sd"), "epsilon")


@pytest.fixture
def one_thread():
    # The tiny models are far faster on one thread than fighting for the shared cores.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def train_dataset(tmp_path) -> Path:
    import numpy as np
    from PIL import Image

    folder = tmp_path / "dataset"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, ((w, h), caption) in enumerate(zip(SIZES, CAPTIONS, strict=True)):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(caption, encoding="utf-8")
    return folder


@pytest.fixture
def serve_standalone():
    """Serve a studio exactly as `embed-studio ui` does (its queue, its launch options) and return its URL."""
    import socket
    import threading

    from embed_studio.ui.app import serve

    launched = []

    def _serve(blocks) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve(blocks, "127.0.0.1", port, block=False)
        launched.append(blocks)
        return f"http://127.0.0.1:{port}/"

    yield _serve
    for blocks in launched:  # as serve_blocks: never wait on a browser's open connection
        server = getattr(blocks, "server", None)
        if server is not None:
            server.force_exit = True
        closer = threading.Thread(target=blocks.close, daemon=True)
        closer.start()
        closer.join(10)
