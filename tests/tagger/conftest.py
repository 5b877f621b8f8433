"""Fixtures for the tagger tests: tiny ONNX taggers and a folder of coloured images."""

from __future__ import annotations

import sys
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
