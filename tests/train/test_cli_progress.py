"""`embed-studio train` as a user sees it, on the tiny SD model: the bar on a pseudo-terminal, plain lines through a
pipe, latent caching counted apart from the steps, previews announced, library chatter only with --verbose."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from embed_studio.cli import main

sys.path.insert(0, str(Path(__file__).parents[1]))
from cli_process import TerminalRun, run_cli, terminal_lines  # noqa: E402

# What transformers/diffusers print on a load when left alone (the accelerate advice, fp32 casts, weight bars).
LIBRARY_CHATTER = ("accelerate", "kept in float32", "Loading weights", "[transformers]", "Warning")


@pytest.fixture
def target(tmp_path, tiny_model) -> Path:
    folder = tmp_path / "embeddings"
    assert (
        main(["create", "embedding", "emb", "--model", str(tiny_model), "--init-text", "red", "--dir", str(folder)])
        == 0
    )
    return folder / "emb.pt"


def _train_args(model, dataset, target: Path, logs: Path, *extra: str) -> list[str]:
    return [
        "train", "embedding", "--model", str(model), "--dataset", str(dataset), "--name", target.stem,
        "--file", str(target), "--log-dir", str(logs), "--lr", "0.01", "--batch-size", "2", "--grad-accum", "1",
        "--width", "64", "--height", "64", "--bucket-step", "32", "--save-every", "0", "--preview-steps", "1",
        "--steps", "4", *extra,
    ]  # fmt: skip


def test_train_on_a_terminal_shows_a_bar_caching_and_previews(tmp_path, tiny_model, dataset, target):
    args = _train_args(tiny_model, dataset, target, tmp_path / "logs", "--preview-every", "2")
    run = TerminalRun(*args, env={"EMBED_STUDIO_PROGRESS_INTERVAL": "0"}, columns=160)
    code, stdout, shown = run.finish()
    assert code == 0, shown
    assert "step 4 (from 0)" in stdout
    assert "\r" in shown and "Traceback" not in shown
    lines = terminal_lines(shown)
    bar = re.compile(r"^step [1-3]/4 \|[█░]{10,}\| .*loss \d\.\d{4} .*\d+\.\d\d it/s · ETA \d\d:\d\d")
    assert any(bar.search(line) for line in lines), lines
    caching = [line for line in lines if line.startswith("caching latents")]
    assert any(re.match(r"caching latents \d+/12 \|", line) for line in caching), lines  # 6 images read + encoded
    assert not any("ETA" in line or "it/s" in line for line in caching)  # the steps' ETA leaves caching out
    assert any("drawing preview 1/1" in line for line in lines), lines


def test_train_through_a_pipe_writes_plain_lines_and_no_library_chatter(tmp_path, tiny_model, dataset, target):
    args = _train_args(tiny_model, dataset, target, tmp_path / "logs", "--preview-every", "2")
    result = run_cli(*args, env_extra={"EMBED_STUDIO_PROGRESS_INTERVAL": "0"})
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "\r" not in err
    lines = err.splitlines()
    counts = [line.split(" · ")[0] for line in lines]
    first_step = counts.index("step 1/4")
    assert "caching latents 12/12" in counts[:first_step]  # caching, counted on its own, comes before the steps
    assert {"step 2/4", "step 4/4"} <= set(counts)
    assert any("drawing preview 1/1" in line for line in lines)
    assert not [line for line in lines if any(word in line for word in LIBRARY_CHATTER)], err


def test_train_verbose_with_lines_an_hour_apart(tmp_path, tiny_model, dataset, target):
    args = _train_args(tiny_model, dataset, target, tmp_path / "logs", "--preview-every", "0", "--verbose")
    result = run_cli(*args, env_extra={"EMBED_STUDIO_PROGRESS_INTERVAL": "3600"})
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert any(word in err for word in LIBRARY_CHATTER), err  # --verbose lets the libraries speak
    progress = [line for line in err.splitlines() if line.startswith(("step ", "caching latents"))]
    # The first line, each change of phase (caching begins, training begins) and the last: none per step.
    assert progress[0].startswith("step 0/4") and progress[-1].startswith("step 4/4"), progress
    assert any(line.startswith("caching latents") for line in progress)
    assert not any(line.startswith(("step 1/4", "step 2/4", "step 3/4")) for line in progress), progress
