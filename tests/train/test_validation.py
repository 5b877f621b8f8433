"""Validation: the held-back share, a loss on fixed noise, the best copy, the plot, and acting on a rising loss."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.train.create import create_embedding
from embed_studio.train.loop import train
from embed_studio.train.validation import ValidationLog, ValidationTracker, split_images


def test_split_holds_back_a_seeded_share():
    images = [Path(f"img{i}.png") for i in range(10)]
    train_part, held = split_images(images, 0.3, seed=1)
    assert len(held) == 3 and set(train_part) | set(held) == set(images) and not set(train_part) & set(held)
    assert split_images(images, 0.3, seed=1) == (train_part, held)
    assert split_images(images, 0.3, seed=2)[1] != held
    assert len(split_images(images[:2], 0.01, seed=1)[1]) == 1  # at least one each way
    assert len(split_images(images[:2], 0.99, seed=1)[0]) == 1
    assert split_images(images, 0.0, seed=1) == (images, [])


def test_tracker_acts_after_patience_rises_in_a_row():
    tracker = ValidationTracker(patience=2)
    seen = [tracker.update(step, loss) for step, loss in enumerate([3.0, 2.0, 2.5, 2.4, 2.6, 2.7, 2.8, 1.0], 1)]
    assert [improved for improved, _ in seen] == [True, True, False, False, False, False, False, True]
    # Rises at checks 3, 5, 6, 7: 3 alone is one rise, 5-6 are two in a row (act), then the count starts again.
    assert [act for _, act in seen] == [False, False, False, False, False, True, False, False]
    assert (tracker.best, tracker.best_step) == (1.0, 8)
    assert not any(ValidationTracker(patience=0).update(s, 10.0 + s)[1] for s in range(5))


def test_a_resumed_run_remembers_the_best_check(tmp_path):
    log = ValidationLog(tmp_path / "validation.csv", 0)
    for step, loss in ((1, 2.0), (2, 1.5), (3, 1.8)):
        log.add(step, loss, None)
    tracker = ValidationTracker(patience=2)
    ValidationLog(tmp_path / "validation.csv", resume_step=2).restore(tracker)
    assert (tracker.best, tracker.best_step) == (1.5, 2)  # step 3 lies after the resume point
    assert tracker.update(3, 1.7) == (False, False)  # a first rise after the resume point
    assert tracker.update(4, 1.9) == (False, True)


@pytest.fixture
def validating_run(tmp_path, tiny_model, make_config):
    from embed_studio.backends.standalone import StandaloneBackend

    def _run(name, **options):
        backend = StandaloneBackend.load(tiny_model, "cpu")
        target = tmp_path / name / "emb.pt"
        target.parent.mkdir()
        save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
        values = dict(validation_split=0.34, validation_every=1, max_steps=3, lr="1")
        values.update(options)
        config = make_config(target, **values)
        notes: list[str] = []
        result = train(config, backend, log=notes.append)
        rows = list(csv.DictReader((config.log_path / "validation.csv").open()))
        return config, result, rows, notes

    return _run


def test_validation_loss_uses_fixed_noise_and_keeps_the_best_copy(validating_run):
    config, _, rows, notes = validating_run("still", lr="0")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert len({r["val_loss"] for r in rows}) == 1  # nothing learned: every check the very same number
    assert any("validating on 2 held-back image(s)" in n for n in notes)

    config, result, rows, _ = validating_run("moving")
    losses = [float(r["val_loss"]) for r in rows]
    best_step = 1 + losses.index(min(losses))
    assert len(set(losses)) == 3 and result.validation_loss == pytest.approx(losses[-1], abs=1e-6)
    best = load_embedding(config.log_path / "emb-best.pt")
    assert best.step == best_step and int(rows[-1]["best_step"]) == best_step


def _acted_at(result, text):
    import re

    steps = [int(re.match(r"step (\d+):", w).group(1)) for w in result.warnings if text in w]
    assert steps, result.warnings  # lr 1 makes the tiny run's validation loss rise (seeded: always the same steps)
    return steps[0]


def test_rollback_restores_the_best_state(validating_run):
    options = dict(validation_patience=1, on_validation_rise="rollback")
    _, result, rows, _ = validating_run("probe", max_steps=6, **options)
    step = _acted_at(result, "rolled back to the best state")
    assert float(rows[step - 1]["val_loss"]) > float(rows[step - 2]["val_loss"])
    # The same run stopped at that step: its final state is the best copy's, rolled back after the step's update.
    config, result, rows, _ = validating_run("rollback", max_steps=step, **options)
    best_step = int(rows[-1]["best_step"])
    assert any(f"rolled back to the best state (step {best_step})" in w for w in result.warnings)
    final, best = load_embedding(config.target_path), load_embedding(config.log_path / "emb-best.pt")
    assert final.step == step and best.step == best_step < step
    assert torch.equal(final.vectors, best.vectors)


def test_lower_lr_on_a_rising_validation_loss(validating_run):
    config, result, _, _ = validating_run("lower", max_steps=6, validation_patience=1, on_validation_rise="lower_lr")
    step = _acted_at(result, "learning rate is now ×0.5")
    rates = [float(r["lr"]) for r in csv.DictReader((config.log_path / "loss.csv").open())]
    assert set(rates[:step]) == {1.0} and rates[step] == 0.5


def test_validation_folder_and_plot(tmp_path, validating_run, dataset):
    import shutil

    from embed_studio.train.lossplot import read_validation_log, render_loss_plot

    folder = tmp_path / "val"
    folder.mkdir()
    for name in ("img0.png", "img0.txt"):
        shutil.copy(dataset / name, folder / name)
    config, _, rows, notes = validating_run("folder", validation_split=0.0, validation_dir=str(folder))
    assert len(rows) == 3 and any("validating on 1 held-back image(s)" in n for n in notes)
    loss_csv = config.log_path / "loss.csv"
    series = read_validation_log(config.log_path / "validation.csv")
    assert series.steps == [1, 2, 3] and series.best()[1] == min(series.losses)
    with_validation = render_loss_plot(loss_csv)
    (config.log_path / "validation.csv").unlink()
    without = render_loss_plot(loss_csv)
    assert with_validation.tobytes() != without.tobytes()


def test_hypernetwork_validation_runs_without_dropout(tmp_path, backend, make_config):
    from test_hypernetwork_train import _new_hypernetwork

    target = tmp_path / "hn.pt"
    _new_hypernetwork(backend, target)  # with dropout layers
    config = make_config(
        target, kind="hypernetwork", lr="0", template="hypernetwork.txt", max_steps=3, validation_split=0.34,
        validation_every=1, flip_augment=True,
    )  # fmt: skip
    train(config, backend)
    rows = list(csv.DictReader((config.log_path / "validation.csv").open()))
    assert len(rows) == 3 and len({r["val_loss"] for r in rows}) == 1  # dropout would make every check differ
