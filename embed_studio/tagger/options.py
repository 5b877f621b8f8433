"""How probabilities become a caption: thresholds, MCut, filters and formatting options."""

from __future__ import annotations

from dataclasses import dataclass, field

from embed_studio.tagger.registry import WD_CHARACTER_THRESHOLD, WD_GENERAL_THRESHOLD

# Kaomoji in the WD vocabulary; their underscores are the face, so spaces must not replace them.
KAOMOJI = frozenset("0_0 (o)_(o) +_+ +_- ._. <o>_<o> <|>_<|> =_= >_< 3_3 6_9 >_o @_@ ^_^ o_o u_u x_x |_| ||_||".split())

SORT_CONFIDENCE, SORT_ALPHABETICAL = "confidence", "alphabetical"
SORT_MODES = (SORT_CONFIDENCE, SORT_ALPHABETICAL)


@dataclass
class TagOptions:
    """Every post-processing option of the WD14 tagger extensions, plus MCut and max tags."""

    general_threshold: float = WD_GENERAL_THRESHOLD
    character_threshold: float = WD_CHARACTER_THRESHOLD
    general_mcut: bool = False  # pick the general threshold per image at the widest gap (MCut)
    character_mcut: bool = False
    include_ratings: bool = False  # put the most likely rating tag first
    max_tags: int = 0  # 0 = no limit; counts predicted tags, not additional ones
    sort: str = SORT_CONFIDENCE
    replace_underscores: bool = True
    underscore_exceptions: frozenset[str] = KAOMOJI
    escape_brackets: bool = False
    weights: bool = False  # write "(tag:0.87)" like the extension's "include confidence"
    exclude_tags: list[str] = field(default_factory=list)
    additional_tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from embed_studio.errors import UserInputError

        for label, value in (("General", self.general_threshold), ("Character", self.character_threshold)):
            if not 0.0 <= float(value) <= 1.0:
                raise UserInputError(f"{label} threshold {value} is outside 0..1. Pick a value like 0.35.")
        if self.sort not in SORT_MODES:
            raise UserInputError(f"Unknown sort {self.sort!r}: use one of {', '.join(SORT_MODES)}.")
        if int(self.max_tags) < 0:
            raise UserInputError("Max tags cannot be negative; use 0 for no limit.")
        self.max_tags = int(self.max_tags)
        self.underscore_exceptions = frozenset(self.underscore_exceptions)
