"""Losses read back every N steps (as on an accelerator), run on the CPU by raising loop.CPU_SYNC_EVERY: the same
loss log, validation and scalars as a read-back every step, fewer waits, and a NaN still keeps the last good step."""

from __future__ import annotations

import csv

import pytest
import torch

import embed_studio.train.loop as loop
import embed_studio.train.scalars as scalars
from embed_studio.backends.provider import LoadedBackendProvider
from embed_studio.backends.standalone import StandaloneBackend
from embed_studio.errors import Cancelled
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.formats.hypernetwork import file_shorthash, load_hypernetwork, save_hypernetwork
from embed_studio.formats.optim import load_optimizer_state
from embed_studio.train.create import create_embedding, create_hypernetwork
from embed_studio.train.job import make_train_job
from embed_studio.train.loop import TrainingDiverged, train


class _NanFrom(StandaloneBackend):
    """A real backend whose denoiser returns NaN from its `fail_at`-th call on (one call per step here)."""

    calls = 0
    fail_at = 3

    def predict(self, noisy_latents, timesteps, cond, sizes=None):
        out = super().predict(noisy_latents, timesteps, cond, sizes)
        type(self).calls += 1
        return out * float("nan") if type(self).calls >= self.fail_at else out


class _Steps:
    """A JobContext that records the loss each step's progress report carries."""

    def __init__(self):
        self.reported: list[tuple[int, float | None]] = []

    def check_cancelled(self):
        pass

    def progress(self, done, total=None, text=None, **stats):
        if stats.get("label") == "step" and done:
            self.reported.append((done, stats.get("loss")))

    def set_text(self, text):
        pass

    def add_image(self, path):
        pass


class _Recorder:
    """Stands in for the TensorBoard writer (an optional package) and keeps every scalar in arrival order."""

    runs: list[list[tuple[int, str, float]]] = []

    def __init__(self, log_dir):
        self.events: list[tuple[int, str, float]] = []
        type(self).runs.append(self.events)

    def add(self, step, **values):
        self.events.extend((step, name, value) for name, value in values.items())

    def flush(self):
        pass


def _csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _losses(log_dir) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r["loss"])) for r in _csv(log_dir / "loss.csv")]


@pytest.fixture
def counted(monkeypatch):
    """Counts the loop's read-backs (its waits for the device)."""
    calls = []
    real = loop.read_back

    def counting(values):
        calls.append(len(values))
        return real(values)

    monkeypatch.setattr(loop, "read_back", counting)
    return calls


def test_deferred_read_back_logs_the_same_losses_with_fewer_waits(tmp_path, backend, make_config, monkeypatch, counted):
    runs = {}
    for interval, save_every in ((1, 3), (4, 3), (4, 0)):
        monkeypatch.setattr(loop, "CPU_SYNC_EVERY", interval)
        counted.clear()
        target = tmp_path / f"emb{interval}-{save_every}.pt"
        save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
        steps = _Steps()
        config = make_config(target, max_steps=7, save_every=save_every, name="emb", grad_accum=2)
        result = train(config, backend, steps)
        runs[interval, save_every] = (_losses(config.log_path), load_embedding(target).vectors, steps.reported)
        runs[interval, save_every] += (result, len(counted))
    (log1, vec1, rep1, res1, waits1), (log4, vec4, rep4, res4, waits4) = runs[1, 3], runs[4, 3]
    assert [s for s, _ in log4] == list(range(1, 8)) and log4 == log1 == runs[4, 0][0]
    assert torch.equal(vec1, vec4) and torch.equal(vec1, runs[4, 0][1])
    assert res4.last_loss == res1.last_loss == pytest.approx(log1[-1][1], abs=1e-7)
    assert [d for d, _ in rep4] == list(range(1, 8))  # progress still every step
    # Every step read back: 7 waits. Every 4 steps: before the copies at 3 and 6 and at the end; without copies at
    # 4 and at the end. Between read-backs the progress carries the last loss known.
    assert waits1 == 7 and waits4 == 3 and runs[4, 0][4] == 2
    every = [loss for _, loss in rep1]
    assert every == pytest.approx([loss for _, loss in log1], abs=1e-7)
    assert [loss for _, loss in rep4] == [None, None, every[2], every[2], every[2], every[5], every[6]]
    assert [loss for _, loss in runs[4, 0][2]] == [None, None, None, every[3], every[3], every[3], every[6]]


def test_deferred_read_back_keeps_validation_and_scalars(tmp_path, backend, make_config, monkeypatch, counted):
    monkeypatch.setattr(scalars, "require_tensorboard", lambda: None)
    monkeypatch.setattr(scalars, "Scalars", _Recorder)
    _Recorder.runs = []
    outcome = []
    for interval in (1, 8):
        monkeypatch.setattr(loop, "CPU_SYNC_EVERY", interval)
        counted.clear()
        target = tmp_path / f"emb{interval}.pt"
        save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
        config = make_config(
            target, max_steps=6, name="emb", tensorboard=True, validation_split=0.34, validation_every=2,
            validation_patience=1, on_validation_rise="rollback",
        )  # fmt: skip
        result = train(config, backend)
        outcome.append((_losses(config.log_path), _csv(config.log_path / "validation.csv"), result, len(counted)))
    (loss1, val1, res1, waits1), (loss8, val8, res8, waits8) = outcome
    assert loss8 == loss1 and [s for s, _ in loss8] == list(range(1, 7))
    assert val8 == val1 and [int(r["step"]) for r in val8] == [2, 4, 6]
    assert res8.validation_loss == res1.validation_loss and res8.warnings == res1.warnings
    assert waits1 == 6 and waits8 == 3  # read back before each validation, not every step
    events1, events8 = _Recorder.runs
    assert [e[:2] for e in events8] == [e[:2] for e in events1]
    assert [v for *_, v in events8] == pytest.approx([v for *_, v in events1], rel=1e-6)
    # Each step's loss, lr and norm, then (at a check) its validation loss: in step order, once each.
    assert [(s, n) for s, n, _ in events8 if n != "validation_loss"] == [
        (s, n) for s in range(1, 7) for n in ("loss", "lr", "param_norm")
    ]
    assert [s for s, n, _ in events8 if n == "validation_loss"] == [2, 4, 6]


def _new_target(backend, target, kind):
    if kind == "embedding":
        save_embedding(create_embedding(backend, "t", "black hair", 2), target)
    else:
        save_hypernetwork(create_hypernetwork("t", backend.context_sizes, seed=1, backend=backend), target)


def _reference(tmp_path, tiny_model, make_config, steps: int, kind: str):
    """A run that stopped after `steps` steps by itself, read back every step."""
    backend = StandaloneBackend.load(tiny_model, "cpu")
    target = tmp_path / f"ref-{kind}.pt"
    _new_target(backend, target, kind)
    train(make_config(target, max_steps=steps, kind=kind, name="t", lr="0.01"), backend)
    return target


@pytest.mark.parametrize("kind", ["embedding", "hypernetwork"])
def test_nan_found_late_rolls_back_to_the_last_good_step(tmp_path, tiny_model, make_config, monkeypatch, kind):
    monkeypatch.setattr(loop, "CPU_SYNC_EVERY", 4)
    backend = _NanFrom.load(tiny_model, "cpu")
    _NanFrom.calls = 0
    target = tmp_path / f"bad-{kind}.pt"
    _new_target(backend, target, kind)
    config = make_config(target, max_steps=8, kind=kind, name="t", lr="0.01")
    with pytest.raises(TrainingDiverged) as err:
        train(config, backend)  # NaN at step 3, found at the read-back of step 4
    assert "at step 3 " in str(err.value) and "(step 2)" in str(err.value)
    monkeypatch.setattr(loop, "CPU_SYNC_EVERY", 1)
    reference = _reference(tmp_path, tiny_model, make_config, 2, kind)
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
    # The log keeps the good steps' losses, those of the reference, and nothing of the bad ones.
    assert [s for s, _ in _losses(config.log_path)] == [1, 2]
    assert _losses(config.log_path) == _losses(config.log_path.parent / f"ref-{kind}")


def test_nan_at_the_first_step_leaves_a_fresh_optimizer(tmp_path, tiny_model, make_config, monkeypatch):
    monkeypatch.setattr(loop, "CPU_SYNC_EVERY", 4)
    monkeypatch.setattr(_NanFrom, "fail_at", 1)
    backend = _NanFrom.load(tiny_model, "cpu")
    _NanFrom.calls = 0
    target = tmp_path / "emb.pt"
    initial = create_embedding(backend, "t", "black hair", 2)
    save_embedding(initial, target)
    with pytest.raises(TrainingDiverged, match="at step 1 "):
        train(make_config(target, max_steps=8, name="t"), backend)
    saved = load_embedding(target)
    assert saved.step == 0 and torch.equal(saved.vectors, initial.vectors)
    state = load_optimizer_state(target, saved.checksum())
    assert state is not None and state["state"] == {}


def test_cancel_reads_the_pending_losses_back_before_saving(tmp_path, backend, make_config, monkeypatch, counted):
    monkeypatch.setattr(loop, "CPU_SYNC_EVERY", 16)
    target = tmp_path / "emb.pt"
    save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
    config = make_config(target, max_steps=50)
    job = make_train_job(config, LoadedBackendProvider(backend, tmp_path))
    job.add_listener(lambda status: job.cancel() if status.done >= 3 else None)
    job.run()
    assert job.status().state == "cancelled" and isinstance(job.exception, Cancelled)
    saved = load_embedding(target)
    # The file's step and the log's rows agree, read back in one wait when the job stopped.
    assert saved.step == 3 and [s for s, _ in _losses(config.log_path)] == [1, 2, 3] and counted == [3]


def test_read_back_interval_per_device():
    # An accelerator waits for its queue at a read-back: every 16 steps; the CPU has nothing queued.
    assert loop.sync_interval(torch.device("cuda")) == loop.SYNC_EVERY == 16
    assert loop.sync_interval(torch.device("cpu")) == 1
