"""How a tag is spelled: its identity, the one form caption files hold, prompt escaping, categories.

booru/, tagger/, dataset/ and train/ all go through here, so `kiana_(honkai)` from a booru,
`kiana kaslana (honkai)` from a tagger and `Kiana_\\(honkai\\)` typed by a user are one tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from embed_studio.errors import UserInputError

# Faces whose underscores are the face, not a word separator (WD's list plus e621's common ones).
KAOMOJI = frozenset(
    "0_0 (o)_(o) +_+ +_- ._. <o>_<o> <|>_<|> =_= >_< 3_3 6_9 >_o @_@ ^_^ o_o u_u x_x |_| ||_|| t_t ;_; -_-".split()
)

_WEIGHTED = re.compile(r"\((.+):(-?\d+(?:\.\d+)?)\)")
_ESCAPED = re.compile(r"\\([()\[\]])")
# A1111 prompt syntax: () and [] change attention unless escaped with a backslash.
_UNESCAPED = re.compile(r"(?<!\\)([()\[\]])")
_WHITESPACE = re.compile(r"\s+")
_HAS_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Spelling:
    """How tags are written. The default is the canonical form caption files hold:
    spaces between words, kaomoji as they are, brackets bare, case as given."""

    underscores: bool = False  # keep the booru's underscores instead of spaces
    escape: bool = False  # \( \): only for folders the WebUI's own Train tab reads as they are
    lower: bool = False
    kaomoji: frozenset[str] = KAOMOJI  # tags whose underscores always stay

    def __call__(self, tag: str) -> str:
        return spell(tag, self)


CANONICAL = Spelling()


def escape(text: str) -> str:
    """( ) [ ] not escaped yet get a backslash, so the prompt parser reads them as text."""
    return _UNESCAPED.sub(r"\\\1", text)


def unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text)


def split_weight(tag: str) -> tuple[str, str | None]:
    """`(tag:0.87)` -> ("tag", "0.87"); any other tag -> (tag, None)."""
    m = _WEIGHTED.fullmatch(tag.strip())
    return (m.group(1), m.group(2)) if m else (tag.strip(), None)


def is_kaomoji(tag: str, kaomoji: frozenset[str] = KAOMOJI) -> bool:
    """A face such as ^_^ or o_o, however its underscores were written (o o, o_o)."""
    under = _WHITESPACE.sub("_", unescape(tag.strip()))
    # Letterless ones (>_<, 0_0) are faces even when no list names them.
    return under in kaomoji or under.lower() in kaomoji or ("_" in under and not _HAS_LETTER.search(under))


@lru_cache(maxsize=65536)  # a 10,000-image dataset asks for the same few thousand tags again and again
def tag_key(tag: str) -> str:
    """A tag's identity however it is written: case, spaces vs underscores, escapes, weights."""
    name, _ = split_weight(tag)
    name = unescape(name).lower().replace("_", " ")
    return _WHITESPACE.sub(" ", name).strip()


def spell(tag: str, spelling: Spelling = CANONICAL) -> str:
    """The tag written as `spelling` says (a weight such as (tag:0.87) is kept around it)."""
    name, weight = split_weight(tag)
    name = _WHITESPACE.sub(" ", unescape(name)).strip()
    if spelling.lower:
        name = name.lower()
    if spelling.underscores or is_kaomoji(name, spelling.kaomoji):
        name = name.replace(" ", "_")
    else:
        name = name.replace("_", " ")
    if spelling.escape:
        name = escape(name)
    return name if weight is None else f"({name}:{weight})"


def canonical(tag: str) -> str:
    return spell(tag, CANONICAL)


def unique(tags: Iterable[str]) -> list[str]:
    """Tags with spelling variants of an earlier tag dropped (the first spelling stays), empties too."""
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        key = tag_key(tag)
        if key and key not in seen:
            seen.add(key)
            out.append(tag.strip())
    return out


# -- categories ---------------------------------------------------------------------------------
CATEGORIES = (
    "general", "artist", "contributor", "copyright", "character", "species", "invalid", "meta", "lore", "rating",
)  # fmt: skip
# The numbers tag CSVs use: Danbooru's (also WD's selected_tags.csv, with 9 for its rating rows)
# and e621's (tag exports, Z3D's tags-selected.csv).
CATEGORY_IDS = {
    "danbooru": {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta", 9: "rating"},
    "e621": {
        0: "general", 1: "artist", 2: "contributor", 3: "copyright", 4: "character", 5: "species", 6: "invalid",
        7: "meta", 8: "lore", 9: "rating",
    },
}  # fmt: skip
VOCABULARIES = tuple(CATEGORY_IDS)
# Caption order when tags of several sources are merged: who, then what, then how it was made.
DEFAULT_ORDER = ("character", "copyright", "species", "general", "artist", "meta", "lore")


def category_name(category_id: int, vocabulary: str = "danbooru") -> str:
    """The name of a CSV's category number; an unknown number counts as general."""
    return CATEGORY_IDS.get(vocabulary, CATEGORY_IDS["danbooru"]).get(int(category_id), "general")


def check_categories(categories: Iterable[str], what: str = "tag categories") -> tuple[str, ...]:
    """Category names typed by a user, checked; order kept, repeats dropped."""
    names = tuple(dict.fromkeys(c.strip().lower() for c in categories if c and c.strip()))
    unknown = [c for c in names if c not in CATEGORIES]
    if unknown:
        raise UserInputError(f"Unknown {what} {unknown}; choose from {', '.join(CATEGORIES)}.")
    return names


def order_by_category(
    tags: Sequence[str], category_of: Callable[[str], str | None], order: Sequence[str] = DEFAULT_ORDER
) -> list[str]:
    """Tags grouped by category in `order` (stable inside a group).

    Tags of no known category before the first known one (a rating, "by artist", a trigger word)
    stay in front; a later unknown tag stays with the tag before it.
    """
    rank = {c: i for i, c in enumerate(order)}
    head: list[str] = []
    keyed: list[tuple[int, int, str]] = []
    current: int | None = None
    for i, tag in enumerate(tags):
        category = category_of(tag)
        if category is not None:
            current = rank.get(category, len(rank))
        if current is None:
            head.append(tag)
        else:
            keyed.append((current, i, tag))
    keyed.sort()
    return head + [t for _, _, t in keyed]


def merge(
    first: Iterable[str],
    second: Iterable[str],
    category_of: Callable[[str], str | None] | None = None,
    order: Sequence[str] = (),
) -> list[str]:
    """One caption from two sources (a booru's and a tagger's): no tag twice in any spelling,
    `first`'s spelling kept, then grouped by category in `order` when one is given."""
    tags = unique([*first, *second])
    if order and category_of is not None:
        tags = order_by_category(tags, category_of, order)
    return tags
