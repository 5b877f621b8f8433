"""The known tagger models: name -> Hugging Face repo, files and the authors' default thresholds."""

from __future__ import annotations

from dataclasses import dataclass

# SmilingWolf's own demo (the wd-tagger space) starts every WD model at these two thresholds.
WD_GENERAL_THRESHOLD = 0.35
WD_CHARACTER_THRESHOLD = 0.85
Z3D_THRESHOLD = 0.3


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable tagger: where it lives on the hub and how to start its thresholds."""

    name: str
    repo_id: str
    model_file: str = "model.onnx"
    tags_file: str = "selected_tags.csv"
    general_threshold: float = WD_GENERAL_THRESHOLD
    character_threshold: float = WD_CHARACTER_THRESHOLD
    vocabulary: str = "danbooru"  # whose tag names the model writes


def _wd(name: str) -> ModelSpec:
    return ModelSpec(name=name, repo_id=f"SmilingWolf/{name}")


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # WD v3 first: newer vocabulary, dynamic batch dimension.
        _wd("wd-eva02-large-tagger-v3"),
        _wd("wd-vit-large-tagger-v3"),
        _wd("wd-swinv2-tagger-v3"),
        _wd("wd-convnext-tagger-v3"),
        _wd("wd-vit-tagger-v3"),
        # WD v1.4 (v2 weights, then the original ones).
        _wd("wd-v1-4-moat-tagger-v2"),
        _wd("wd-v1-4-swinv2-tagger-v2"),
        _wd("wd-v1-4-convnextv2-tagger-v2"),
        _wd("wd-v1-4-convnext-tagger-v2"),
        _wd("wd-v1-4-vit-tagger-v2"),
        _wd("wd-v1-4-convnext-tagger"),
        _wd("wd-v1-4-vit-tagger"),
        # e621's vocabulary (species, e621 character names): the natural tagger for e621 datasets.
        # Its CSV has another name, e621's category numbers and no rating rows. The authors' demo
        # (fancyfeast's Z3D-E621-Convnext space and its mods) keeps every tag scoring over 0.3,
        # characters included; WD's 0.85 drops most e621 characters.
        ModelSpec(
            name="Z3D-E621-Convnext",
            repo_id="toynya/Z3D-E621-Convnext",
            tags_file="tags-selected.csv",
            general_threshold=Z3D_THRESHOLD,
            character_threshold=Z3D_THRESHOLD,
            vocabulary="e621",
        ),
    )
}

# The names the WD14 tagger extension shows, so guides that say "wd14-convnext" still work.
ALIASES: dict[str, str] = {
    "wd14-vit": "wd-v1-4-vit-tagger",
    "wd14-convnext": "wd-v1-4-convnext-tagger",
    "wd14-vit-v2": "wd-v1-4-vit-tagger-v2",
    "wd14-convnext-v2": "wd-v1-4-convnext-tagger-v2",
    "wd14-convnextv2-v2": "wd-v1-4-convnextv2-tagger-v2",
    "wd14-swinv2-v2": "wd-v1-4-swinv2-tagger-v2",
    "wd14-moat-v2": "wd-v1-4-moat-tagger-v2",
    "wd-v3-vit": "wd-vit-tagger-v3",
    "wd-v3-convnext": "wd-convnext-tagger-v3",
    "wd-v3-swinv2": "wd-swinv2-tagger-v3",
    "wd-v3-vit-large": "wd-vit-large-tagger-v3",
    "wd-v3-eva02-large": "wd-eva02-large-tagger-v3",
    "z3d": "Z3D-E621-Convnext",
    "e621": "Z3D-E621-Convnext",
}

DEFAULT_MODEL = "wd-v1-4-convnext-tagger-v2"


def model_names() -> list[str]:
    return list(MODELS)


def find_spec(name: str) -> ModelSpec | None:
    """The spec for a registry name or alias (case-insensitive), or None."""
    key = name.strip()
    lowered = {k.lower(): v for k, v in MODELS.items()}
    if key.lower() in lowered:
        return lowered[key.lower()]
    alias = {k.lower(): v for k, v in ALIASES.items()}.get(key.lower())
    if alias:
        return MODELS[alias]
    # A bare repo id ("SmilingWolf/wd-vit-tagger-v3") names its model too.
    by_repo = {s.repo_id.lower(): s for s in MODELS.values()}
    return by_repo.get(key.lower())
