"""Turn one image's probability vector into tags: thresholds or MCut, filters, order, formatting."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embed_studio.tagger.labels import TagLabels
from embed_studio.tagger.options import SORT_ALPHABETICAL, TaggerOptions
from embed_studio.tagspell import tag_key

# SmilingWolf's demo never lets MCut drop the character threshold below this.
CHARACTER_MCUT_FLOOR = 0.15


@dataclass
class Selection:
    """What one image gets: the caption's tags in order, and the scores behind them."""

    tags: list[str]  # formatted, in caption order
    ratings: dict[str, float] = field(default_factory=dict)
    characters: dict[str, float] = field(default_factory=dict)  # raw names above threshold
    general: dict[str, float] = field(default_factory=dict)
    by_category: dict[str, dict[str, float]] = field(default_factory=dict)  # every kept category, raw names
    general_threshold: float = 0.0
    character_threshold: float = 0.0


def mcut_threshold(probs: np.ndarray) -> float:
    """Maximum Cut (Largeron et al., 2012): the midpoint of the widest gap between sorted scores."""
    if probs.size < 2:
        return 0.0 if probs.size == 0 else float(probs[0]) / 2
    ordered = np.sort(probs)[::-1]
    gaps = ordered[:-1] - ordered[1:]
    i = int(np.argmax(gaps))
    return float((ordered[i] + ordered[i + 1]) / 2)


def select_tags(probs: np.ndarray, labels: TagLabels, options: TaggerOptions) -> Selection:
    probs = np.asarray(probs, dtype=np.float32).reshape(-1)
    if probs.size != len(labels):
        raise ValueError(f"model gave {probs.size} scores for {len(labels)} tags")
    names = labels.names
    excluded = {tag_key(t) for t in options.exclude_tags if t.strip()}

    general_probs = probs[labels.general_idx]
    character_probs = probs[labels.character_idx]
    general_t = mcut_threshold(general_probs) if options.general_mcut else options.general_threshold
    character_t = options.character_threshold
    if options.character_mcut:
        character_t = max(CHARACTER_MCUT_FLOOR, mcut_threshold(character_probs))

    def above(indices: np.ndarray, threshold: float) -> dict[str, float]:
        keep = indices[probs[indices] >= threshold]
        return {names[i]: float(probs[i]) for i in keep if tag_key(names[i]) not in excluded}

    found: dict[str, dict[str, float]] = {}
    for category in options.categories:
        # Z3D's species, copyright, meta...: each its own category and threshold, not general's.
        threshold = {"general": general_t, "character": character_t}.get(category, options.threshold_for(category))
        found[category] = above(labels.indices(category), threshold)
    ratings = {names[i]: float(probs[i]) for i in labels.rating_idx}

    scored = {name: score for tags in found.values() for name, score in tags.items()}
    predicted = sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))
    if options.max_tags:
        predicted = predicted[: options.max_tags]  # the most confident survive
    spelling = options.spelling
    if options.sort == SORT_ALPHABETICAL:
        predicted.sort(key=lambda kv: spelling(kv[0]).lower())

    ordered: list[tuple[str, float | None]] = [(t.strip(), None) for t in options.additional_tags if t.strip()]
    if options.include_ratings and ratings:
        top = max(ratings.items(), key=lambda kv: kv[1])
        if tag_key(top[0]) not in excluded:
            ordered.append(top)
    ordered.extend(predicted)

    tags: list[str] = []
    seen: set[str] = set()
    for name, score in ordered:
        key = tag_key(name)
        if key in seen:
            continue
        seen.add(key)
        if score is None:  # the user's own tags are written exactly as typed (a trigger word may want its _)
            tags.append(name)
            continue
        tag = spelling(name)
        tags.append(f"({tag}:{score:.2f})" if options.weights else tag)
    return Selection(
        tags=tags,
        ratings=ratings,
        characters=found.get("character", {}),
        general=found.get("general", {}),
        by_category=found,
        general_threshold=float(general_t),
        character_threshold=float(character_t),
    )
