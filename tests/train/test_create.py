"""Creating embeddings (init text, too-long refusal, name clash) and hypernetworks (WebUI module layout)."""

from pathlib import Path

import pytest
import torch

from embed_studio.errors import UserInputError
from embed_studio.formats.hypernetwork import webui_dropout_structure
from embed_studio.train.create import create_embedding, create_hypernetwork, init_vectors, name_clashes
from embed_studio.train.hypernetwork_modules import HypernetworkModule

WEBUI_FIXTURE = Path(__file__).parents[1] / "formats" / "data" / "webui-made-hn.pt"  # made by the WebUI itself


def test_init_text_fills_vectors_from_token_embeddings(backend):
    tokens = backend.token_vectors("black hair")
    assert tokens.shape[0] == 2
    vec = init_vectors(backend, "black hair", 4)
    # Spread like the WebUI: a, a, b, b.
    assert torch.equal(vec[0], tokens[0]) and torch.equal(vec[1], tokens[0])
    assert torch.equal(vec[2], tokens[1]) and torch.equal(vec[3], tokens[1])
    assert torch.count_nonzero(init_vectors(backend, "", 3)) == 0


def test_init_text_too_long_is_refused_with_the_fix(backend):
    with pytest.raises(UserInputError) as err:
        init_vectors(backend, "black hair, red eyes", 2)
    message = str(err.value)
    assert "needs 5 tokens" in message and "only 2" in message and "--vectors 5" in message


def test_create_embedding_records_metadata(backend, tmp_path):
    from embed_studio.formats.embedding import load_embedding, save_embedding

    data = create_embedding(backend, "my/char!", "red eyes", 3, clip_skip=2)
    assert data.name == "mychar" and data.step == 0
    save_embedding(data, tmp_path / "mychar.pt")
    loaded = load_embedding(tmp_path / "mychar.pt")
    assert loaded.vectors.shape == (3, backend.token_dim)
    assert loaded.extra["embed_studio"]["clip_skip"] == 2


def test_name_clash_with_captions():
    assert name_clashes("1girl", ["1girl, solo", "solo, smile", "2girls"]) == 1
    assert name_clashes("black hair", ["black_hair, solo"]) == 1
    assert name_clashes("mychar", ["1girl, solo"]) == 0


def _keys(structure, activation, layer_norm, dropout, activate_output=False):
    m = HypernetworkModule(32, structure, activation, "Normal", layer_norm, activate_output, dropout)
    return list(m.state_dict())


def test_module_keys_follow_the_webui_layout():
    # [1,2,1], relu, layer norm: Linear(0) ReLU(1) LayerNorm(2) Linear(3) LayerNorm(4)
    assert _keys([1, 2, 1], "relu", True, [0, 0, 0]) == [
        "linear.0.weight",
        "linear.0.bias",
        "linear.2.weight",
        "linear.2.bias",
        "linear.3.weight",
        "linear.3.bias",
        "linear.4.weight",
        "linear.4.bias",
    ]
    # [1,2,2,1], linear, dropout after hidden layers: Linear(0) Dropout(1) Linear(2) Dropout(3) Linear(4)
    dropout = webui_dropout_structure([1, 2, 2, 1], True, True)
    assert dropout == [0, 0.3, 0.3, 0]
    assert _keys([1, 2, 2, 1], "linear", False, dropout) == [
        "linear.0.weight",
        "linear.0.bias",
        "linear.2.weight",
        "linear.2.bias",
        "linear.4.weight",
        "linear.4.bias",
    ]
    # activate_output puts the activation after the last layer too
    assert len(_keys([1, 2, 1], "tanh", False, None, activate_output=True)) == 4
    m = HypernetworkModule(32, [1, 2, 1], "swish", "Normal", False, True, None)
    assert isinstance(m.linear[1], torch.nn.Hardswish) and isinstance(m.linear[3], torch.nn.Hardswish)


def test_new_module_is_near_identity():
    m = HypernetworkModule(16, [1, 2, 1], "relu", "Normal", False, False, None)
    x = torch.randn(3, 16)
    assert torch.allclose(m(x), x, atol=0.05)


@pytest.mark.skipif(not WEBUI_FIXTURE.exists(), reason="the WebUI-made hypernetwork fixture is not on this machine")
def test_same_keys_as_a_webui_made_file():
    from embed_studio.formats.hypernetwork import load_hypernetwork

    webui = load_hypernetwork(WEBUI_FIXTURE)
    ours = create_hypernetwork(
        "x",
        sorted(webui.layers),
        layer_structure=webui.layer_structure,
        activation_func=webui.activation_func,
        weight_init=webui.weight_initialization,
        add_layer_norm=webui.is_layer_norm,
        use_dropout=webui.use_dropout,
        dropout_structure=webui.dropout_structure,
        activate_output=webui.activate_output,
    )
    for size in webui.layers:
        for theirs, mine in zip(webui.layers[size], ours.layers[size], strict=True):
            assert list(theirs) == list(mine)
            assert all(theirs[k].shape == mine[k].shape for k in theirs)


def test_create_hypernetwork_file_loads(tmp_path, backend):
    from embed_studio.formats.hypernetwork import load_hypernetwork, save_hypernetwork

    data = create_hypernetwork(
        "hn",
        backend.context_sizes,
        layer_structure="1, 2, 1",
        activation_func="relu",
        weight_init="KaimingNormal",
        add_layer_norm=True,
        use_dropout=True,
        seed=1,
        backend=backend,
    )
    save_hypernetwork(data, tmp_path / "hn.pt")
    loaded = load_hypernetwork(tmp_path / "hn.pt")
    assert sorted(loaded.layers) == list(backend.context_sizes)
    assert "linear.0.weight" in loaded.layers[32][0]
    assert loaded.activation_func == "relu" and loaded.is_layer_norm
    with pytest.raises(UserInputError, match="start and end with 1"):
        create_hypernetwork("bad", [32], layer_structure="2, 1")
