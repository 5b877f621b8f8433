"""Optimizer sidecars: the WebUI's hash check against its own .optim files, and ours."""

from __future__ import annotations

import torch

from embed_studio.formats.embedding import EmbeddingData, load_embedding, save_embedding
from embed_studio.formats.hypernetwork import file_shorthash
from embed_studio.formats.optim import load_optimizer_state, optim_path, save_optimizer_state, saved_optimizer_name


def test_webui_embedding_sidecar_matches_checksum(webui_files):
    target = webui_files / "webui-made-emb.pt"
    state = load_optimizer_state(target, load_embedding(target).checksum())
    assert state is not None and state["param_groups"][0]["lr"] == 0.005
    assert load_optimizer_state(target, "ffff") is None


def test_webui_hypernetwork_sidecar_matches_shorthash(webui_files):
    target = webui_files / "webui-made-hn.pt"
    state = load_optimizer_state(target, file_shorthash(target))
    assert state is not None and len(state["param_groups"][0]["params"]) == 32  # 2 sizes x 2 modules x 8 tensors
    assert saved_optimizer_name(target) == "AdamW"
    assert load_optimizer_state(target, "0000000000") is None


def test_sidecar_round_trip_resumes_an_optimizer(tmp_path, webui_check):
    vec = torch.randn(2, 16, requires_grad=True)
    opt = torch.optim.AdamW([vec], lr=0.01)
    vec.sum().backward()
    opt.step()
    emb = EmbeddingData("e", vec.detach().clone(), step=1)
    target = tmp_path / "e.pt"
    save_embedding(emb, target)
    save_optimizer_state(target, opt.state_dict(), emb.checksum())

    assert optim_path(target).name == "e.pt.optim"
    assert webui_check(optim_path(target))[0]
    raw = torch.load(optim_path(target), weights_only=True)
    assert list(raw) == ["hash", "optimizer_state_dict"]  # the WebUI's embedding sidecar keys
    state = load_optimizer_state(target, load_embedding(target).checksum())
    fresh = torch.optim.AdamW([torch.zeros(2, 16, requires_grad=True)], lr=0.01)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])

    emb.vectors = emb.vectors + 1  # trained further without a new sidecar: the WebUI would not trust it
    save_embedding(emb, target)
    assert load_optimizer_state(target, load_embedding(target).checksum()) is None


def test_missing_or_damaged_sidecar_gives_none(tmp_path):
    target = tmp_path / "x.pt"
    assert load_optimizer_state(target, "abcd") is None
    optim_path(target).write_bytes(b"garbage")
    assert load_optimizer_state(target, "abcd") is None


def test_hypernetwork_sidecar_keys(tmp_path):
    target = tmp_path / "h.pt"
    target.write_bytes(b"stand-in for a saved hypernetwork")
    save_optimizer_state(target, {"state": {}, "param_groups": []}, file_shorthash(target), optimizer_name="AdamW")
    raw = torch.load(optim_path(target), weights_only=True)
    assert list(raw) == ["optimizer_name", "hash", "optimizer_state_dict"]
    assert load_optimizer_state(target, file_shorthash(target)) == {"state": {}, "param_groups": []}


def test_inspect_names_the_optimizer_of_a_tagged_sidecar(tmp_path):
    # Lion's state carries ':lion' after the hash: the WebUI ignores it, Embed Studio resumes it with Lion, so it
    # is not "stale" — and a sidecar of other weights still is.
    from embed_studio.formats.detect import describe_file
    from embed_studio.formats.optim import state_tag

    emb = EmbeddingData("e", torch.randn(2, 16), step=3)
    target = tmp_path / "e.pt"
    save_embedding(emb, target)
    assert describe_file(target)["optimizer_state"] == "none"
    save_optimizer_state(target, {"state": {}, "param_groups": []}, emb.checksum() + state_tag("lion"))
    status = describe_file(target)["optimizer_state"]
    assert status.startswith("matches, for lion") and "WebUI" in status
    save_optimizer_state(target, {"state": {}, "param_groups": []}, emb.checksum())
    assert describe_file(target)["optimizer_state"] == "matches"
    save_optimizer_state(target, {"state": {}, "param_groups": []}, "0123abcd:lion")
    assert describe_file(target)["optimizer_state"].startswith("stale")
