"""TrainConfig: defaults from the guides, validation messages, JSON round trip."""

import json

import pytest

from embed_studio.errors import UserInputError
from embed_studio.train.config import DEFAULT_EMBEDDING_LR, DEFAULT_HYPERNETWORK_LR, TrainConfig


def _config(**kw):
    values = dict(kind="embedding", model="m", dataset="d", target="/x/mychar.pt")
    values.update(kw)
    return TrainConfig(**values)


def test_defaults_follow_the_guides():
    c = _config()
    assert c.lr == DEFAULT_EMBEDDING_LR and c.batch_size == 1 and c.grad_accum == 5
    assert c.shuffle_tags and c.latent_sampling == "deterministic" and c.save_every == 250
    assert c.name == "mychar" and c.log_path.as_posix() == "textual_inversion/mychar"
    assert _config(kind="hypernetwork").lr == DEFAULT_HYPERNETWORK_LR
    c.validate()


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (dict(batch_size=0), "Batch size"),
        (dict(tag_dropout=1.5), "Tag dropout"),
        (dict(precision="fp8"), "Precision"),
        (dict(latent_sampling="sometimes"), "Latent sampling"),
        (dict(width=500), "multiple of 64"),
        (dict(lr="0.1:x"), "not a whole step number"),
        (dict(clip_grad_mode="value", clip_grad_value="big"), "Gradient clipping value"),
        (dict(kind="lora"), "Kind"),
        (dict(preview_sampler="restart"), "Preview sampler"),
    ],
)
def test_validation_names_the_bad_value(overrides, fragment):
    with pytest.raises(UserInputError, match=fragment):
        _config(**overrides).validate()


def test_json_round_trip(tmp_path):
    c = _config(lr="0.001:10, 0.0005", batch_size=4, seed=3)
    c.save_json(tmp_path / "config.json")
    assert TrainConfig.load_json(tmp_path / "config.json") == c
    with pytest.raises(UserInputError, match="Unknown training setting"):
        TrainConfig.from_dict({**c.to_dict(), "warp_speed": 9})


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("shuffle_tags", "no", "'shuffle_tags' must be true or false"),
        ("width", "x", "'width' must be a whole number"),
        ("width", 512.5, "'width' must be a whole number"),
        ("batch_size", True, "'batch_size' must be a whole number"),
        ("tag_dropout", "0.1", "'tag_dropout' must be a number"),
        ("adam_eps", float("nan"), "'adam_eps' must be a number"),
        ("lr", 0.005, "'lr' must be text"),
        ("extra", [1], "'extra' must be an object"),
    ],
)
def test_a_config_json_with_a_wrong_type_names_the_field(tmp_path, field, value, expected):
    # A hand-edited config.json (what `train --config` reads): "no" must not become True.
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**_config().to_dict(), field: value}), encoding="utf-8")
    with pytest.raises(UserInputError, match=expected):
        TrainConfig.load_json(path)


def test_json_numbers_take_the_field_type_and_missing_fields_are_named():
    c = TrainConfig.from_dict({**_config().to_dict(), "width": 512.0, "tag_dropout": 0, "shuffle_tags": False})
    assert c.width == 512 and isinstance(c.width, int)
    assert c.tag_dropout == 0.0 and isinstance(c.tag_dropout, float)
    assert c.shuffle_tags is False
    with pytest.raises(UserInputError, match="Missing training setting.*dataset, target"):
        TrainConfig.from_dict({"kind": "embedding", "model": "m"})
    with pytest.raises(UserInputError, match="JSON object"):
        TrainConfig.from_dict(["kind", "embedding"])
