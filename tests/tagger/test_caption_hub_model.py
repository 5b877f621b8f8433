"""Caption actions, finding a model's files, and what the ONNX session tells us about the model."""

from __future__ import annotations

import numpy as np
import pytest
from tagger_test_models import V3_INPUT, V3_OUTPUT, build_tagger

from embed_studio.errors import FileFormatError, UserInputError
from embed_studio.tagger.caption import combine
from embed_studio.tagger.hub import resolve_model
from embed_studio.tagger.model import TaggerModel, get_model, loaded_models, unload_models
from embed_studio.tagger.registry import MODELS, find_spec
from embed_studio.tagspell import tag_key

NEW = ["1girl", "smile", "long hair"]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("skip", None),
        ("overwrite", "1girl, smile, long hair"),
        # No action writes a tag twice: "smile" is in both.
        ("append", "my char, smile, 1girl, long hair"),
        ("prepend", "1girl, smile, long hair, my char"),
        ("merge", "my char, smile, 1girl, long hair"),
    ],
)
def test_caption_actions_on_existing(action, expected):
    assert combine("my char, smile", NEW, action) == expected


def test_merge_ignores_spelling_differences():
    assert combine("long_hair, My Char", NEW, "merge") == "long_hair, My Char, 1girl, smile"


@pytest.mark.parametrize("action", ["append", "prepend", "merge"])
def test_no_action_duplicates_a_tag_written_another_way(action):
    existing = r"kiana kaslana \(honkai\), Black_Hair, o o"
    new = ["o_o", "black hair", "kiana_kaslana_(honkai)", "smile"]
    tags = combine(existing, new, action).split(", ")
    assert len(tags) == len({tag_key(t) for t in tags}) == 4
    if action != "prepend":  # the caption already there keeps its spelling
        assert tags[:3] == [r"kiana kaslana \(honkai\)", "Black_Hair", "o o"]


def test_merge_orders_by_category():
    category = {"krystal": "character", "canine": "species", "solo": "general"}.get
    merged = combine("by someone, solo, canine", ["krystal", "solo"], "merge", category, ("character", "species"))
    assert merged == "by someone, krystal, canine, solo"
    assert combine("solo, canine", ["krystal"], "append", category, ("character",)) == "solo, canine, krystal"


@pytest.mark.parametrize("action", ["skip", "overwrite", "append", "prepend", "merge"])
def test_no_existing_caption_is_written_whatever_the_action(action):
    assert combine(None, NEW, action) == "1girl, smile, long hair"
    assert combine("  ", NEW, action) == "1girl, smile, long hair"


def test_unknown_action_is_a_user_error():
    with pytest.raises(UserInputError):
        combine("a", NEW, "replace")


def test_registry_names_aliases_and_repo_ids():
    assert find_spec("wd14-convnext").repo_id == "SmilingWolf/wd-v1-4-convnext-tagger"
    assert find_spec("WD-EVA02-LARGE-TAGGER-V3").name == "wd-eva02-large-tagger-v3"
    assert find_spec("SmilingWolf/wd-vit-tagger-v3").name == "wd-vit-tagger-v3"
    z3d = MODELS["Z3D-E621-Convnext"]
    assert (z3d.tags_file, z3d.vocabulary) == ("tags-selected.csv", "e621")
    # Its authors' demo keeps every tag over 0.3, characters too (WD's demo: 0.35 / 0.85).
    assert (z3d.general_threshold, z3d.character_threshold) == (0.3, 0.3)
    assert MODELS["wd-v1-4-convnext-tagger-v2"].character_threshold == 0.85
    assert find_spec("no-such-model") is None


def test_local_folder_and_onnx_file(tmp_path):
    tiny = build_tagger(tmp_path / "mine")
    files = resolve_model(tmp_path / "mine")
    assert (files.model_path, files.tags_path, files.spec) == (
        tiny.folder / "model.onnx",
        tiny.folder / "selected_tags.csv",
        None,
    )
    assert resolve_model(tiny.folder / "model.onnx").tags_path == tiny.folder / "selected_tags.csv"
    z = build_tagger(tmp_path / "z3d", csv_name="tags-selected.csv")
    assert resolve_model(z.folder).tags_path.name == "tags-selected.csv"


def test_folder_without_csv_or_unknown_name_says_what_to_do(tmp_path):
    tiny = build_tagger(tmp_path / "m")
    (tiny.folder / "selected_tags.csv").unlink()
    with pytest.raises(UserInputError, match="selected_tags.csv"):
        resolve_model(tiny.folder)
    with pytest.raises(UserInputError, match="Unknown tagger model"):
        resolve_model("definitely-not-a-model")


@pytest.mark.parametrize(
    ("kwargs", "layout", "batch"),
    [({}, "NHWC", None), ({"batch": 1}, "NHWC", 1), ({"nchw": True, "size": 24}, "NCHW", None)],
)
def test_input_size_layout_and_batch_read_from_the_model(tmp_path, kwargs, layout, batch):
    tiny = build_tagger(tmp_path / "m", **kwargs)
    model = TaggerModel(resolve_model(tiny.folder), device="cpu")
    assert (model.input.height, model.input.width, model.input.layout, model.input.batch) == (
        tiny.size,
        tiny.size,
        layout,
        batch,
    )
    assert model.batch_size(8) == (batch or 8)
    assert model.active_provider == model.session.get_providers()[0] == "CPUExecutionProvider"


def test_batched_and_padded_predictions_match_single_ones(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(3, 32, 32, 3)).astype(np.float32)
    dynamic = TaggerModel(
        resolve_model(build_tagger(tmp_path / "d", input_name=V3_INPUT, output_name=V3_OUTPUT).folder), "cpu"
    )
    fixed = TaggerModel(resolve_model(build_tagger(tmp_path / "f", batch=1).folder), "cpu")
    together = dynamic.predict(images)
    assert dynamic.run_count == 1
    singles = np.concatenate([fixed.predict(images[i : i + 1]) for i in range(3)])
    assert fixed.run_count == 3
    np.testing.assert_allclose(together, singles, rtol=1e-5)
    assert not np.allclose(together[0], together[1])  # different images, different scores


def test_csv_of_another_model_is_refused(tmp_path):
    tiny = build_tagger(tmp_path / "m")
    with open(tiny.folder / "selected_tags.csv", "a") as f:
        f.write("9999,extra_tag,0,1\n")
    with pytest.raises(FileFormatError, match="another model"):
        TaggerModel(resolve_model(tiny.folder), "cpu")


def test_models_are_shared_and_unloaded(tmp_path):
    files = resolve_model(build_tagger(tmp_path / "m").folder)
    first = get_model(files, "cpu")
    assert get_model(files, "cpu") is first
    assert loaded_models() == [first]
    assert unload_models() == 1
    assert loaded_models() == []
    assert get_model(files, "cpu") is not first


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_gpu_provider_that_does_not_start_is_reported(tmp_path, monkeypatch):
    """The users' top complaint: the GPU silently unused. Here onnxruntime is asked for CUDA that
    this (CPU) build cannot start; the model must say so instead of pretending."""
    import onnxruntime as ort

    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    model = TaggerModel(resolve_model(build_tagger(tmp_path / "m").folder), device="auto")
    assert model.active_provider == "CPUExecutionProvider"
    assert "CUDAExecutionProvider failed to start" in model.provider_note
    assert "running on the CPU" in model.describe_provider()


def test_cpu_device_asks_for_cpu_only(tmp_path):
    model = TaggerModel(resolve_model(build_tagger(tmp_path / "m").folder), device="cpu")
    assert model.providers == ["CPUExecutionProvider"] and model.provider_note == ""
    with pytest.raises(UserInputError):
        TaggerModel(resolve_model(build_tagger(tmp_path / "m2").folder), device="tpu")
