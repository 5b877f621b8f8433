"""How probabilities become a caption: thresholds, MCut, categories, filters and formatting options."""

from __future__ import annotations

from dataclasses import dataclass, field

from embed_studio.errors import UserInputError
from embed_studio.tagger.registry import WD_CHARACTER_THRESHOLD, WD_GENERAL_THRESHOLD
from embed_studio.tagspell import CATEGORIES, KAOMOJI, Spelling, check_categories

SORT_CONFIDENCE, SORT_ALPHABETICAL = "confidence", "alphabetical"
SORT_MODES = (SORT_CONFIDENCE, SORT_ALPHABETICAL)
# What a tagger's rows can be besides ratings (WD has general and character; Z3D has e621's all).
TAGGER_CATEGORIES = tuple(c for c in CATEGORIES if c != "rating")
# Artist, meta and lore tags say who drew it and how it was posted, not what a character looks like.
DEFAULT_CATEGORIES = ("general", "character", "species", "copyright")


@dataclass
class TaggerOptions:
    """Every post-processing option of the WD14 tagger extensions, plus MCut, categories and max tags."""

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
    categories: tuple[str, ...] = DEFAULT_CATEGORIES  # the model's categories that go into captions
    # Thresholds of the other categories (species, copyright, meta...); one left out uses the general one.
    category_thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        thresholds = {"General": self.general_threshold, "Character": self.character_threshold}
        thresholds.update({c.capitalize(): v for c, v in self.category_thresholds.items()})
        for label, value in thresholds.items():
            if not 0.0 <= float(value) <= 1.0:
                raise UserInputError(f"{label} threshold {value} is outside 0..1. Pick a value like 0.35.")
        if self.sort not in SORT_MODES:
            raise UserInputError(f"Unknown sort {self.sort!r}: use one of {', '.join(SORT_MODES)}.")
        if int(self.max_tags) < 0:
            raise UserInputError("Max tags cannot be negative; use 0 for no limit.")
        self.max_tags = int(self.max_tags)
        self.underscore_exceptions = frozenset(self.underscore_exceptions)
        self.categories = check_categories(self.categories, "tagger categories")
        check_categories(self.category_thresholds, "categories in the thresholds")
        if "rating" in self.categories:
            raise UserInputError("Ratings are not a caption category here: tick 'Include rating' instead.")
        self.category_thresholds = {c.strip().lower(): float(v) for c, v in self.category_thresholds.items()}

    @property
    def spelling(self) -> Spelling:
        return Spelling(
            underscores=not self.replace_underscores, escape=self.escape_brackets, kaomoji=self.underscore_exceptions
        )

    def threshold_for(self, category: str) -> float:
        if category == "character":
            return self.character_threshold
        return self.category_thresholds.get(category, self.general_threshold)


def parse_thresholds(text: str) -> dict[str, float]:
    """`species=0.3, meta=0.5` (a form field or flag) as {category: threshold}."""
    out: dict[str, float] = {}
    for part in (text or "").replace("\n", ",").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            out[name.strip().lower()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise UserInputError(f"Threshold {part.strip()!r}: write category=value, e.g. species=0.3.")
    return out
