"""What happens to a caption that already exists: skip, overwrite, append, prepend or merge."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from embed_studio.dataset.folder import join_tags, split_tags
from embed_studio.errors import UserInputError
from embed_studio.tagspell import merge

SKIP, OVERWRITE, APPEND, PREPEND, MERGE = "skip", "overwrite", "append", "prepend", "merge"
ACTIONS = (SKIP, OVERWRITE, APPEND, PREPEND, MERGE)
ACTION_LABELS = {
    SKIP: "Skip images that have a caption",
    OVERWRITE: "Overwrite (old caption backed up)",
    APPEND: "Append new tags after the old ones",
    PREPEND: "Prepend new tags before the old ones",
    MERGE: "Merge: one caption, grouped by category",
}


def check_action(action: str) -> str:
    if action not in ACTIONS:
        raise UserInputError(f"Unknown action on existing captions {action!r}: use one of {', '.join(ACTIONS)}.")
    return action


def combine(
    existing: str | None,
    new_tags: list[str],
    action: str,
    category_of: Callable[[str], str | None] | None = None,
    order: Sequence[str] = (),
) -> str | None:
    """The caption to write, or None to leave the file alone.

    Append, prepend and merge never write a tag twice in any spelling; the caption already there
    keeps its spelling. Merge also groups the tags by category in `order` (a booru caption and a
    tagger's become one caption with characters first, say).
    """
    check_action(action)
    if existing is None or not existing.strip():
        return join_tags(merge(new_tags, [], category_of, order if action == MERGE else ()))
    old = split_tags(existing)
    if action == SKIP:
        return None
    if action == OVERWRITE:
        return join_tags(new_tags)
    if action == PREPEND:
        return join_tags(merge(new_tags, old))
    return join_tags(merge(old, new_tags, category_of, order if action == MERGE else ()))
