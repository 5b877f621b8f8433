"""Tag lists, thresholds, MCut and every formatting option, on a known probability vector."""

from __future__ import annotations

import numpy as np
import pytest

from embed_studio.errors import FileFormatError, UserInputError
from embed_studio.tagger.labels import TagLabels, load_labels
from embed_studio.tagger.options import TaggerOptions, parse_thresholds
from embed_studio.tagger.registry import MODELS
from embed_studio.tagger.select import mcut_threshold, select_tags
from embed_studio.tagspell import tag_key

NAMES = [
    "general",
    "sensitive",
    "questionable",
    "explicit",
    "1girl",
    "long_hair",
    "^_^",
    "kiana_(honkai)",
    "hatsune_miku",
    "smile",
]
CATS = [9, 9, 9, 9, 0, 0, 0, 4, 4, 0]
PROBS = np.array([0.2, 0.7, 0.05, 0.01, 0.95, 0.6, 0.4, 0.9, 0.5, 0.3], dtype=np.float32)


@pytest.fixture
def labels():
    return TagLabels(names=list(NAMES), categories=np.array(CATS))


def tags(labels, **opts):
    return select_tags(PROBS, labels, TaggerOptions(**opts)).tags


def test_wd_csv_categories(tmp_path):
    path = tmp_path / "selected_tags.csv"
    path.write_text(
        "tag_id,name,category,count\n1,general,9,10\n2,1girl,0,5\n3,hatsune_miku,4,3\n4,kiana_(honkai),4,2\n"
    )
    labels = load_labels(path)
    assert labels.names == ["general", "1girl", "hatsune_miku", "kiana_(honkai)"]
    assert labels.rating_idx.tolist() == [0]
    assert labels.general_idx.tolist() == [1]
    assert labels.character_idx.tolist() == [2, 3]


def test_e621_csv_without_ratings_keeps_e621_categories(tmp_path):
    path = tmp_path / "tags-selected.csv"
    path.write_text("name,category\nanthro,0\ncanine,5\nkrystal,4\nhi_res,7\nstar_fox,3\nby_someone,1\n")
    labels = load_labels(path)
    assert labels.vocabulary == "e621" and labels.rating_idx.size == 0
    assert [labels.names[i] for i in labels.general_idx] == ["anthro"]
    assert [labels.names[i] for i in labels.character_idx] == ["krystal"]
    assert [labels.names[i] for i in labels.indices("species")] == ["canine"]
    assert [labels.names[i] for i in labels.indices("meta")] == ["hi_res"]
    assert labels.category_of("Star Fox") == "copyright" and labels.category_of("by someone") == "artist"
    # The same numbers in a WD list (which has rating rows) are Danbooru's: 5 is meta there.
    wd = tmp_path / "selected_tags.csv"
    wd.write_text("name,category\ngeneral,9\nhighres,5\n")
    assert load_labels(wd).category_of("highres") == "meta"


def test_csv_without_name_column_is_a_clear_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(FileFormatError, match="no 'name' column"):
        load_labels(path)


def test_separate_general_and_character_thresholds(labels):
    assert tags(labels) == ["1girl", "kiana (honkai)", "long hair", "^_^"]  # 0.35 / 0.85: miku at 0.5 is out
    assert tags(labels, character_threshold=0.45) == ["1girl", "kiana (honkai)", "long hair", "hatsune miku", "^_^"]
    assert tags(labels, general_threshold=0.5, character_threshold=0.95) == ["1girl", "long hair"]


def test_mcut_splits_at_the_widest_gap():
    assert mcut_threshold(np.array([0.9, 0.85, 0.3, 0.2])) == pytest.approx(0.575)
    assert mcut_threshold(np.array([0.1, 0.8])) == pytest.approx(0.45)


def test_mcut_options(labels):
    sel = select_tags(PROBS, labels, TaggerOptions(general_mcut=True, character_mcut=True))
    general = PROBS[[4, 5, 6, 9]]  # 0.95 0.6 0.4 0.3: widest gap 0.95-0.6
    assert sel.general_threshold == pytest.approx(mcut_threshold(general))
    assert sel.character_threshold == pytest.approx(0.7)  # between 0.9 and 0.5
    assert sel.tags == ["1girl", "kiana (honkai)"]


def test_character_mcut_never_goes_below_floor(labels):
    probs = PROBS.copy()
    probs[7], probs[8] = 0.12, 0.01
    sel = select_tags(probs, labels, TaggerOptions(character_mcut=True))
    assert sel.character_threshold == pytest.approx(0.15)
    assert "kiana (honkai)" not in sel.tags


def test_ratings_max_tags_and_sort(labels):
    assert tags(labels, include_ratings=True)[0] == "sensitive"
    assert tags(labels, max_tags=2) == ["1girl", "kiana (honkai)"]
    assert tags(labels, sort="alphabetical", character_threshold=0.45) == [
        "1girl",
        "^_^",
        "hatsune miku",
        "kiana (honkai)",
        "long hair",
    ]


def test_underscores_kaomoji_and_escape(labels):
    assert tags(labels, replace_underscores=False, character_threshold=0.45) == [
        "1girl",
        "kiana_(honkai)",
        "long_hair",
        "hatsune_miku",
        "^_^",
    ]
    assert "^_^" in tags(labels)  # a kaomoji keeps its underscore even with spaces on
    escaped = tags(labels, escape_brackets=True, character_threshold=0.45)
    assert "kiana \\(honkai\\)" in escaped


def test_exclude_matches_underscores_or_spaces(labels):
    assert tags(labels, exclude_tags=["long hair"]) == ["1girl", "kiana (honkai)", "^_^"]
    assert tags(labels, exclude_tags=["LONG_HAIR", "1girl"]) == ["kiana (honkai)", "^_^"]
    assert "kiana (honkai)" not in tags(labels, character_threshold=0.45, exclude_tags=["kiana (honkai)"])


def test_additional_tags_first_without_duplicates(labels):
    assert tags(labels, additional_tags=["my_char", "long hair"]) == [
        "my_char",
        "long hair",
        "1girl",
        "kiana (honkai)",
        "^_^",
    ]


def test_weights(labels):
    assert tags(labels, weights=True)[:3] == ["(1girl:0.95)", "(kiana (honkai):0.90)", "(long hair:0.60)"]


def test_tag_key_ignores_spelling():
    assert tag_key("Kiana \\(honkai\\)") == tag_key("kiana_(honkai)") == tag_key("(kiana (honkai):0.91)")


def test_bad_option_values_are_user_errors():
    with pytest.raises(UserInputError):
        TaggerOptions(general_threshold=1.5)
    with pytest.raises(UserInputError):
        TaggerOptions(sort="random")


# e621's numbering, as Z3D's tags-selected.csv has it: no rating rows.
E621_NAMES = ["anthro", "canine", "krystal", "hi_res", "star_fox", "some_artist", "lore_tag"]
E621_CATS = [0, 5, 4, 7, 3, 1, 8]
E621_PROBS = np.array([0.6, 0.6, 0.4, 0.9, 0.5, 0.95, 0.9], dtype=np.float32)


def test_z3d_categories_keep_their_own_include_options_and_thresholds():
    labels = TagLabels(names=list(E621_NAMES), categories=np.array(E621_CATS), vocabulary="e621")
    z3d = MODELS["Z3D-E621-Convnext"]

    def pick(**opts):
        base = {"general_threshold": z3d.general_threshold, "character_threshold": z3d.character_threshold}
        return select_tags(E621_PROBS, labels, TaggerOptions(**{**base, **opts}))

    sel = pick()
    # Artist, meta and lore are categories of their own, off unless asked for; species is not "general".
    assert sel.tags == ["anthro", "canine", "star fox", "krystal"]
    assert sel.by_category["species"] == {"canine": pytest.approx(0.6)} and set(sel.general) == {"anthro"}
    assert pick(categories=("general", "meta", "artist")).tags == ["some artist", "hi res", "anthro"]
    assert pick(category_thresholds={"species": 0.7, "copyright": 0.45}).tags == ["anthro", "star fox", "krystal"]
    # The authors' demo keeps e621 characters WD's 0.85 would drop.
    assert "krystal" not in pick(character_threshold=0.85).tags


def test_category_options_are_checked():
    with pytest.raises(UserInputError, match="Unknown tagger categories"):
        TaggerOptions(categories=("general", "colour"))
    with pytest.raises(UserInputError, match="Species threshold"):
        TaggerOptions(category_thresholds={"species": 2})
    assert parse_thresholds("species=0.3,\nmeta = 0.5") == {"species": 0.3, "meta": 0.5}
    with pytest.raises(UserInputError, match="category=value"):
        parse_thresholds("species 0.3")
