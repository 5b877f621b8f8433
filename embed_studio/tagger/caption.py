"""What happens to a caption that already exists: skip, overwrite, append, prepend or merge."""

from __future__ import annotations

from embed_studio.dataset.folder import join_tags, split_tags
from embed_studio.errors import UserInputError
from embed_studio.tagger.select import tag_key

SKIP, OVERWRITE, APPEND, PREPEND, MERGE = "skip", "overwrite", "append", "prepend", "merge"
ACTIONS = (SKIP, OVERWRITE, APPEND, PREPEND, MERGE)
ACTION_LABELS = {
    SKIP: "Skip images that have a caption",
    OVERWRITE: "Overwrite (old caption backed up)",
    APPEND: "Append new tags after the old ones",
    PREPEND: "Prepend new tags before the old ones",
    MERGE: "Merge: old tags, then new ones not already there",
}


def check_action(action: str) -> str:
    if action not in ACTIONS:
        raise UserInputError(f"Unknown action on existing captions {action!r}: use one of {', '.join(ACTIONS)}.")
    return action


def combine(existing: str | None, new_tags: list[str], action: str) -> str | None:
    """The caption to write, or None to leave the file alone."""
    check_action(action)
    if existing is None or not existing.strip():
        return join_tags(new_tags)
    old = split_tags(existing)
    if action == SKIP:
        return None
    if action == OVERWRITE:
        return join_tags(new_tags)
    if action == APPEND:
        return join_tags(old + new_tags)
    if action == PREPEND:
        return join_tags(new_tags + old)
    seen = {tag_key(t) for t in old}
    merged = list(old)
    for tag in new_tags:
        if tag_key(tag) not in seen:
            seen.add(tag_key(tag))
            merged.append(tag)
    return join_tags(merged)
