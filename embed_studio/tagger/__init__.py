"""WD14-style ONNX taggers: model registry, hub download and cache, batched inference."""

from __future__ import annotations

import importlib
from typing import Any

# Public names, imported on first use so `embed-studio --help` stays quick.
_EXPORTS = {
    "TaggerOptions": "options",
    "TagRequest": "pipeline",
    "TagSummary": "pipeline",
    "ImageResult": "pipeline",
    "tag_folder": "pipeline",
    "make_tag_job": "pipeline",
    "load_tagger": "pipeline",
    "tag_image": "pipeline",
    "ACTIONS": "caption",
    "combine": "caption",
    "select_tags": "select",
    "mcut_threshold": "select",
    "resolve_model": "hub",
    "get_model": "model",
    "unload_models": "model",
    "loaded_models": "model",
    "MODELS": "registry",
    "DEFAULT_MODEL": "registry",
    "find_spec": "registry",
    "model_names": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"embed_studio.tagger.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'embed_studio.tagger' has no attribute {name!r}")
