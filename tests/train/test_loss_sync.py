"""Losses read back every N steps (as on a GPU): the same loss log, and a NaN still keeps the last good state."""

from __future__ import annotations

import csv

import pytest
import torch

import embed_studio.train.loop as loop
from embed_studio.backends.standalone import StandaloneBackend
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.formats.hypernetwork import file_shorthash, load_hypernetwork, save_hypernetwork
from embed_studio.formats.optim import load_optimizer_state
from embed_studio.train.create import create_embedding, create_hypernetwork
from embed_studio.train.loop import TrainingDiverged, train


class _NanFrom(StandaloneBackend):
    """A real backend whose denoiser returns NaN from its N-th call on."""

    calls = 0
    fail_at = 3

    def predict(self, noisy_latents, timesteps, cond):
        out = super().predict(noisy_latents, timesteps, cond)
        type(self).calls += 1
        return out * float("nan") if type(self).calls >= self.fail_at else out


class _Steps:
    def __init__(self):
        self.reported = []

    def check_cancelled(self):
        pass

    def progress(self, done, total=None, text=None, **stats):
        if stats.get("label") == "step" and done:
            self.reported.append((done, stats.get("loss")))

    def set_text(self, text):
        pass

    def add_image(self, path):
        pass


def _losses(log_dir) -> list[tuple[int, float]]:
    with open(log_dir / "loss.csv", newline="", encoding="utf-8") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


@pytest.fixture
def deferred(monkeypatch):
    monkeypatch.setattr(loop, "sync_interval", lambda device: 4)


def test_deferred_read_back_logs_the_same_losses(tmp_path, backend, make_config, monkeypatch):
    runs = {}
    for interval, save_every in ((1, 3), (4, 3), (4, 0)):
        monkeypatch.setattr(loop, "sync_interval", lambda device, n=interval: n)
        target = tmp_path / f"emb{interval}-{save_every}.pt"
        save_embedding(create_embedding(backend, target.stem, "black hair", 2), target)
        steps = _Steps()
        config = make_config(target, max_steps=7, save_every=save_every, name="emb")
        result = train(config, backend, steps)
        runs[interval, save_every] = (_losses(config.log_path), load_embedding(target).vectors, steps.reported, result)
    (log1, vec1, rep1, res1), (log4, vec4, rep4, res4) = runs[1, 3], runs[4, 3]
    assert [s for s, _ in log4] == list(range(1, 8)) and log4 == log1 == runs[4, 0][0]
    assert torch.equal(vec1, vec4) and res4.last_loss == res1.last_loss == pytest.approx(log1[-1][1], rel=1e-6)
    assert [d for d, _ in rep4] == list(range(1, 8))  # progress still every step
    # Read back before the copies at steps 3 and 6 and at the end (never 4 pending); between, the last known loss.
    every = [loss for _, loss in rep1]
    assert every == pytest.approx([loss for _, loss in log1], rel=1e-6)
    assert [loss for _, loss in rep4] == [None, None, every[2], every[2], every[2], every[5], every[6]]
    # Without copies: every 4 steps and at the end.
    assert [loss for _, loss in runs[4, 0][2]] == [None, None, None, every[3], every[3], every[3], every[6]]


def _reference_state(tmp_path, tiny_model, make_config, steps: int, kind: str = "embedding"):
    backend = StandaloneBackend.load(tiny_model, "cpu")
    target = tmp_path / f"ref-{kind}.pt"
    _new_target(backend, target, kind)
    train(make_config(target, max_steps=steps, kind=kind, name="t", lr="0.01"), backend)
    return target


def _new_target(backend, target, kind):
    if kind == "embedding":
        save_embedding(create_embedding(backend, "t", "black hair", 2), target)
    else:
        save_hypernetwork(create_hypernetwork("t", backend.context_sizes, seed=1, backend=backend), target)


@pytest.mark.parametrize("kind", ["embedding", "hypernetwork"])
def test_nan_found_late_rolls_back_to_the_last_good_step(tmp_path, tiny_model, make_config, deferred, kind):
    backend = _NanFrom.load(tiny_model, "cpu")
    _NanFrom.calls = 0
    target = tmp_path / f"bad-{kind}.pt"
    _new_target(backend, target, kind)
    config = make_config(target, max_steps=8, kind=kind, name="t", lr="0.01")
    with pytest.raises(TrainingDiverged) as err:
        train(config, backend)  # NaN at step 3, read back at step 4
    assert "at step 3" in str(err.value) and "(step 2)" in str(err.value)
    reference = _reference_state(tmp_path, tiny_model, make_config, 2, kind)
    # The file and its optimizer state are exactly those of a run that stopped after step 2.
    if kind == "embedding":
        got, want = load_embedding(target), load_embedding(reference)
        assert got.step == want.step == 2 and torch.equal(got.vectors, want.vectors)
        got_o = load_optimizer_state(target, got.checksum())
        want_o = load_optimizer_state(reference, want.checksum())
    else:
        got, want = load_hypernetwork(target), load_hypernetwork(reference)
        assert got.step == want.step == 2 and got.layers.keys() == want.layers.keys()
        for size, pair in want.layers.items():
            for got_sd, want_sd in zip(got.layers[size], pair, strict=True):
                assert all(torch.equal(got_sd[k], v) for k, v in want_sd.items())
        got_o = load_optimizer_state(target, file_shorthash(target))
        want_o = load_optimizer_state(reference, file_shorthash(reference))
    assert got_o is not None and want_o is not None and got_o["state"].keys() == want_o["state"].keys()
    for key, state in want_o["state"].items():
        for name, value in state.items():
            assert torch.equal(got_o["state"][key][name], value), (key, name)
    assert [s for s, _ in _losses(config.log_path)] == [1, 2]


def test_nan_at_the_first_step_leaves_a_fresh_optimizer(tmp_path, tiny_model, make_config, deferred):
    backend = _NanFrom.load(tiny_model, "cpu")
    _NanFrom.calls, _NanFrom.fail_at = 0, 1
    try:
        target = tmp_path / "emb.pt"
        initial = create_embedding(backend, "t", "black hair", 2)
        save_embedding(initial, target)
        with pytest.raises(TrainingDiverged, match="at step 1 "):
            train(make_config(target, max_steps=8, name="t"), backend)
    finally:
        _NanFrom.fail_at = 3
    saved = load_embedding(target)
    assert saved.step == 0 and torch.equal(saved.vectors, initial.vectors)
    state = load_optimizer_state(target, saved.checksum())
    assert state is not None and state["state"] == {}
