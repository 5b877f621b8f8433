"""Hypernetworks: the WebUI-made file, what we write, its module layout and shorthash."""

from __future__ import annotations

import pytest
import torch

from embed_studio.errors import FileFormatError
from embed_studio.formats.hypernetwork import (
    HypernetworkData,
    build_module_stack,
    file_shorthash,
    load_hypernetwork,
    module_layout,
    save_hypernetwork,
    webui_dropout_structure,
)


def test_webui_made_hypernetwork_loads(webui_files):
    hn = load_hypernetwork(webui_files / "webui-made-hn.pt")
    assert hn.name == "webui-made-hn"
    assert hn.sizes == [32, 64]
    assert hn.layer_structure == [1, 2, 1]
    assert hn.activation_func == "swish" and hn.weight_initialization == "KaimingNormal"
    assert hn.is_layer_norm is True and hn.use_dropout is True
    assert hn.dropout_structure == [0, 0, 0] and hn.last_layer_dropout is False and hn.activate_output is False
    assert hn.step == 12 and hn.sd_checkpoint == "694637395a" and hn.sd_checkpoint_name == "tiny-sd1"
    k, v = hn.layers[64]
    assert tuple(k["linear.0.weight"].shape) == (128, 64) and tuple(v["linear.3.weight"].shape) == (64, 128)


def test_module_stack_takes_the_webui_state_dicts(webui_files):
    hn = load_hypernetwork(webui_files / "webui-made-hn.pt")
    for size in hn.sizes:
        for sd in hn.layers[size]:
            holder = torch.nn.Module()
            holder.linear = build_module_stack(size, hn.layout())
            holder.load_state_dict(sd, strict=True)  # every key and shape as the WebUI's HypernetworkModule
    kinds = [kind for kind, _ in module_layout([1, 2, 1], "swish", True, [0, 0, 0], False)]
    assert kinds == ["linear", "activation", "layer_norm", "linear", "layer_norm"]


def _key_types(d: dict) -> dict:
    return {k: type(v).__name__ for k, v in d.items()}


def test_saved_file_has_every_webui_key(webui_files, tmp_path, webui_check):
    reference = torch.load(webui_files / "webui-made-hn.pt", weights_only=True)
    hn = load_hypernetwork(webui_files / "webui-made-hn.pt")
    hn.step, hn.name = 20, "resaved"
    path = tmp_path / "resaved.pt"
    save_hypernetwork(hn, path)

    assert webui_check(path)[0]
    written = torch.load(path, weights_only=True)
    assert list(written) == list(reference)
    assert _key_types(written) == _key_types(reference)
    for size in (32, 64):
        for ours, theirs in zip(written[size], reference[size], strict=True):
            assert type(ours) is type(theirs)
            assert list(ours) == list(theirs) and ours._metadata == theirs._metadata
            assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    same = {k: v for k, v in reference.items() if not isinstance(k, int) and k not in ("step", "name")}
    assert {k: written[k] for k in same} == same
    assert (written["step"], written["name"]) == (20, "resaved")


def test_new_hypernetwork_round_trip(tmp_path, webui_check):
    data = HypernetworkData(
        "fresh",
        layers={},
        layer_structure=[1, 1.5, 1.5, 1],
        activation_func="relu",
        use_dropout=True,
        last_layer_dropout=True,
    )
    for size in (32, 48):
        data.layers[size] = [build_module_stack(size, data.layout()).state_dict() for _ in range(2)]
    data.layers = {s: [{f"linear.{k}": v for k, v in sd.items()} for sd in pair] for s, pair in data.layers.items()}
    path = tmp_path / "fresh.pt"
    save_hypernetwork(data, path)
    assert webui_check(path)[0]
    raw = torch.load(path, weights_only=True)
    assert raw["dropout_structure"] == [0, 0.3, 0.3, 0] and raw["last_layer_dropout"] is True
    assert raw["optional_info"] is None and raw["activation_func"] == "relu"
    back = load_hypernetwork(path)
    assert back.sizes == [32, 48] and back.layer_structure == [1, 1.5, 1.5, 1] and back.use_dropout
    assert torch.equal(back.layers[48][1]["linear.0.weight"], data.layers[48][1]["linear.0.weight"])


def test_dropout_structure_like_the_webui():
    assert webui_dropout_structure([1, 2, 1], False, True) == [0, 0, 0]
    assert webui_dropout_structure([1, 2, 1], True, False) == [0, 0, 0]
    assert webui_dropout_structure([1, 2, 1], True, True) == [0, 0.3, 0]
    assert webui_dropout_structure([1, 2, 2, 1], True, False) == [0, 0.3, 0, 0]
    assert webui_dropout_structure([1, 2, 2, 1], True, True) == [0, 0.3, 0.3, 0]
    assert webui_dropout_structure(None, False, False) == [0, 0, 0]


def test_shorthash_is_the_webuis(webui_files):
    # The WebUI stored Hypernetwork.shorthash() in the sidecar when it saved the file.
    stored = torch.load(webui_files / "webui-made-hn.pt.optim", weights_only=True)["hash"]
    assert file_shorthash(webui_files / "webui-made-hn.pt") == stored == "0753186070"


def test_embedding_is_not_a_hypernetwork(webui_files):
    with pytest.raises(FileFormatError, match="webui-made-emb.pt.*embedding, not a hypernetwork"):
        load_hypernetwork(webui_files / "webui-made-emb.pt")


def test_truncated_hypernetwork(webui_files, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes((webui_files / "webui-made-hn.pt").read_bytes()[:5000])
    with pytest.raises(FileFormatError, match="cut.pt"):
        load_hypernetwork(path)
