"""Embeddings: reading WebUI-made files and old formats, writing what the WebUI writes, clear errors."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from embed_studio.errors import FileFormatError
from embed_studio.formats.embedding import EmbeddingData, load_embedding, save_embedding


def _types(d: dict) -> dict:
    return {k: (type(v).__name__, _types(v) if isinstance(v, dict) else None) for k, v in d.items()}


def test_webui_made_embedding_loads(webui_files):
    emb = load_embedding(webui_files / "webui-made-emb.pt")
    assert emb.name == "webui-made-emb"
    assert tuple(emb.vectors.shape) == (3, 32) and emb.vectors.dtype == torch.float32
    assert emb.step == 12
    assert emb.sd_checkpoint == "694637395a" and emb.sd_checkpoint_name == "tiny-sd1"
    assert emb.extra == {}


def test_checksum_is_the_webuis(webui_files):
    # The WebUI stored its Embedding.checksum() in the sidecar: ours must compute the same value.
    emb = load_embedding(webui_files / "webui-made-emb.pt")
    stored = torch.load(webui_files / "webui-made-emb.pt.optim", weights_only=True)["hash"]
    assert emb.checksum() == stored == "b0f3"
    emb.vectors = emb.vectors + 0.5
    assert emb.checksum() != stored


def test_saved_pt_has_webui_keys_and_types(webui_files, tmp_path, webui_check):
    reference = torch.load(webui_files / "webui-made-emb.pt", weights_only=True)
    emb = EmbeddingData("mine", torch.randn(2, 32), step=5, sd_checkpoint="abcdef1234", sd_checkpoint_name="model")
    path = tmp_path / "mine.pt"
    save_embedding(emb, path)

    assert webui_check(path)[0]
    written = torch.load(path, weights_only=True)
    assert list(written) == list(reference)
    assert _types(written) == _types(reference)
    assert written["string_to_token"] == {"*": 265}
    assert torch.equal(written["string_to_param"]["*"], emb.vectors)
    assert (written["name"], written["step"], written["sd_checkpoint"]) == ("mine", 5, "abcdef1234")
    back = load_embedding(path)
    assert torch.equal(back.vectors, emb.vectors) and back.step == 5 and back.checksum() == emb.checksum()


def test_new_embedding_and_extra_metadata_round_trip(tmp_path, webui_check):
    emb = EmbeddingData("fresh", torch.zeros(4, 768), extra={"embed_studio": {"clip_skip": 2, "family": "sd1"}})
    path = tmp_path / "fresh.pt"
    save_embedding(emb, path)
    assert webui_check(path)[0]
    back = load_embedding(path)
    assert back.step is None and back.sd_checkpoint is None
    assert back.extra == {"embed_studio": {"clip_skip": 2, "family": "sd1"}}
    assert torch.load(path, weights_only=True)["step"] is None


def test_resaving_webui_file_keeps_everything(webui_files, tmp_path):
    emb = load_embedding(webui_files / "webui-made-emb.pt")
    save_embedding(emb, tmp_path / "copy.pt")
    a = torch.load(webui_files / "webui-made-emb.pt", weights_only=True)
    b = torch.load(tmp_path / "copy.pt", weights_only=True)
    assert {k: v for k, v in a.items() if k != "string_to_param"} == {
        k: v for k, v in b.items() if k != "string_to_param"
    }
    assert torch.equal(a["string_to_param"]["*"], b["string_to_param"]["*"])


def test_safetensors_round_trip_as_the_webui_reads_it(tmp_path):
    emb = EmbeddingData(
        "st",
        torch.randn(3, 32),
        step=7,
        sd_checkpoint="0123456789",
        sd_checkpoint_name="m",
        extra={"embed_studio": {"clip_skip": 1}},
    )
    path = tmp_path / "st.safetensors"
    save_embedding(emb, path)
    # The WebUI takes the single tensor whatever its key.
    tensors = safetensors.torch.load_file(str(path))
    assert list(tensors) == ["emb_params"] and torch.equal(tensors["emb_params"], emb.vectors)
    back = load_embedding(path)
    assert torch.equal(back.vectors, emb.vectors)
    assert (back.name, back.step, back.sd_checkpoint, back.sd_checkpoint_name) == ("st", 7, "0123456789", "m")
    assert back.extra == {"embed_studio": {"clip_skip": 1}}


def test_foreign_safetensors_with_one_tensor(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"anything": torch.ones(2, 16)}, str(path))
    emb = load_embedding(path)
    assert emb.name == "other" and tuple(emb.vectors.shape) == (2, 16) and emb.step is None


def test_old_parameterdict_embedding(tmp_path):
    # The original textual-inversion code kept vectors in a ParameterDict; the WebUI still reads those.
    vec = torch.randn(2, 8)
    path = tmp_path / "old.pt"
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vec)}),
            "name": "old",
            "step": 3,
        },
        path,
    )
    emb = load_embedding(path)
    assert torch.equal(emb.vectors, vec) and emb.step == 3 and emb.name == "old"


def test_diffusers_concept_bin(tmp_path):
    path = tmp_path / "learned_embeds.bin"
    vec = torch.randn(768)
    torch.save({"<my-token>": vec}, path)
    emb = load_embedding(path)
    assert tuple(emb.vectors.shape) == (1, 768) and torch.equal(emb.vectors[0], vec)
    assert emb.name == "learned_embeds"


def test_multiple_terms_rejected(tmp_path):
    path = tmp_path / "two.pt"
    torch.save({"string_to_param": {"*": torch.ones(1, 4), "+": torch.ones(1, 4)}}, path)
    with pytest.raises(FileFormatError, match="two.pt.*exactly one term"):
        load_embedding(path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.pt", b"this is not a torch file", "not a readable torch file"),
        ("list.pt", None, "not an embedding"),
        ("weights.txt", b"hello", "unknown embedding file type"),
        ("broken.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", "not a readable .safetensors"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message) as err:
        load_embedding(path)
    assert name in str(err.value)


def test_truncated_file(webui_files, tmp_path):
    data = (webui_files / "webui-made-emb.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="cut.pt"):
        load_embedding(path)


def test_hypernetwork_is_not_an_embedding(webui_files):
    with pytest.raises(FileFormatError, match="webui-made-hn.pt.*hypernetwork"):
        load_embedding(webui_files / "webui-made-hn.pt")


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="nope.pt.*not found"):
        load_embedding(tmp_path / "nope.pt")


def test_unsupported_save_suffix(tmp_path):
    with pytest.raises(FileFormatError, match="x.bin"):
        save_embedding(EmbeddingData("x", torch.ones(1, 4)), tmp_path / "x.bin")
