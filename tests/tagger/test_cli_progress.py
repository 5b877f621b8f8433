"""`embed-studio tag` as a user sees it: the real command with a tiny ONNX tagger on a pseudo-terminal and through
a pipe; Ctrl-C part-way; a folder with nothing left to tag."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli_process import TerminalRun, run_cli, terminal_lines  # noqa: E402

EVERY_CHANGE = {"EMBED_STUDIO_PROGRESS_INTERVAL": "0"}


def _images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{i:04d}.png")
    return folder


def _tag_args(folder: Path, tagger, tmp_path: Path, *more: str) -> list[str]:
    return ["tag", str(folder), "--model", str(tagger.folder), "--models-dir", str(tmp_path / "cache"), "--no-cache",
            "--batch-size", "1", *more]  # fmt: skip


def test_tag_on_a_terminal_redraws_one_bar_line(tiny_tagger, tmp_path):
    folder = _images(tmp_path / "data", 12)
    run = TerminalRun(*_tag_args(folder, tiny_tagger, tmp_path), env=EVERY_CHANGE, columns=120)
    code, stdout, shown = run.finish()
    assert code == 0, shown
    assert "12 caption(s) written" in stdout
    lines = terminal_lines(shown)
    bar = re.compile(r"^image (?:[1-9]|1[01])/12 \|[█░]{10,}\| .*\d+\.\d\d img/s · ETA \d\d:\d\d")
    assert any(bar.search(line) for line in lines), lines
    assert "\r" in shown and "Traceback" not in shown


def test_tag_through_a_pipe_writes_plain_lines(tiny_tagger, tmp_path):
    folder = _images(tmp_path / "data", 6)
    result = run_cli(*_tag_args(folder, tiny_tagger, tmp_path), env_extra=EVERY_CHANGE)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    counts = [line.split(" · ")[0] for line in result.stderr.splitlines() if line.startswith("image ")]
    assert {"image 1/6", "image 6/6"} <= set(counts), result.stderr
    # Nothing but progress and our own note on the provider: no onnxruntime log, no Python warning.
    others = [line for line in result.stderr.splitlines() if not line.startswith(("image ", "note: "))]
    assert others == [], result.stderr


def test_a_folder_with_nothing_to_tag_ends_at_once(tiny_tagger, tmp_path):
    folder = _images(tmp_path / "data", 2)
    for image in folder.glob("*.png"):
        image.with_suffix(".txt").write_text("already, captioned", encoding="utf-8")
    result = run_cli(*_tag_args(folder, tiny_tagger, tmp_path), env_extra=EVERY_CHANGE)
    assert result.returncode == 0, result.stderr
    assert "0 caption(s) written, 2 skipped" in result.stdout
    assert result.stderr.splitlines() == ["image 0"]  # never a bar of something it was not going to do


def test_ctrl_c_in_tag_keeps_the_captions_written(tiny_tagger, tmp_path):
    # Enough images that the run is still going when the signal lands after the first count is drawn.
    folder = _images(tmp_path / "data", 1500)
    run = TerminalRun(*_tag_args(folder, tiny_tagger, tmp_path), env=EVERY_CHANGE)
    run.wait_for("image 2/1500")
    run.process.send_signal(signal.SIGINT)
    code, stdout, shown = run.finish()
    assert code == 130, shown
    assert "Traceback" not in shown
    said = [line for line in terminal_lines(shown) if line.startswith("cancelled:")]
    assert len(said) == 1, shown
    written = int(re.match(r"cancelled: (\d+) caption\(s\) written and kept, (\d+) image\(s\) not tagged", said[0])[1])
    left = int(re.search(r"(\d+) image\(s\) not tagged", said[0])[1])
    captions = list(folder.glob("*.txt"))
    assert 2 <= written < 1500 and len(captions) == written and written + left == 1500
    assert all(c.read_text(encoding="utf-8").strip() for c in captions)  # each caption whole
    assert [p.name for p in folder.iterdir() if p.suffix not in (".png", ".txt")] == []  # no temporaries
    assert stdout == ""  # no summary of a finished run


def test_a_model_download_shows_in_our_line_only(fake_hub, tmp_path):
    # The hub's own tqdm bar would draw a second progress line into ours (and into every log).
    endpoint, _ = fake_hub
    folder = _images(tmp_path / "data", 2)
    args = ["tag", str(folder), "--model", "wd14-convnext", "--models-dir", str(tmp_path / "models"), "--no-cache"]
    result = run_cli(*args, env_extra={**EVERY_CHANGE, "HF_ENDPOINT": endpoint})
    assert result.returncode == 0, result.stderr
    assert "Downloading model.onnx" in result.stderr
    others = [line for line in result.stderr.splitlines() if not line.startswith(("image ", "note: "))]
    assert others == [], result.stderr
    assert "\r" not in result.stderr
