"""Helpers for the real-WebUI tests: the test booru server and tagger builders, and the WebUI's embedding list."""

from __future__ import annotations

from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def _load_test_module(name: str, path: Path):
    """A helper module of another test folder (pytest runs with --import-mode=importlib)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


tagger_models = _load_test_module("es_webui_tagger_models", REPO / "tests" / "tagger" / "tagger_test_models.py")
fake_booru = _load_test_module("es_webui_fake_booru", REPO / "tests" / "booru" / "fake_booru.py")

BOORU_USER = "es-ci-tester"


def embeddings_state(webui) -> tuple[dict, dict]:
    """(loaded, skipped) as the WebUI lists them: a file its restricted unpickler refused is in neither."""
    body = requests.get(f"{webui.url}/sdapi/v1/embeddings", timeout=30).json()
    return body["loaded"], body["skipped"]


def assert_embeddings_loaded(webui, *names: str) -> None:
    loaded, skipped = embeddings_state(webui)
    for name in names:
        assert name not in skipped, f"the WebUI skipped {name}: {skipped[name]}"
        assert name in loaded, f"the WebUI did not load {name} (see its log: refused by its unpickler?)"
