"""`embed-studio train` as a real process: bad paths fail before the model loads, signals save, kills lose nothing."""

from __future__ import annotations

import csv
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from embed_studio.cli import main
from embed_studio.formats.embedding import load_embedding

sys.path.insert(0, str(Path(__file__).parents[1]))
from cli_process import assert_one_line_error, cli_env, popen_cli, run_cli  # noqa: E402

NO_MODEL = "no-such-model-folder"  # a run that got as far as loading the model would fail on this instead


def _train_args(model, dataset, target: Path, logs: Path, *extra: str) -> list[str]:
    return [
        "train", "embedding", "--model", str(model), "--dataset", str(dataset), "--name", target.stem,
        "--file", str(target), "--log-dir", str(logs), "--lr", "0.01", "--batch-size", "2", "--width", "64",
        "--height", "64", "--bucket-step", "32", "--preview-every", "0", "--seed", "3", *extra,
    ]  # fmt: skip


@pytest.fixture
def target(tmp_path, tiny_model) -> Path:
    folder = tmp_path / "embeddings"
    assert (
        main(["create", "embedding", "emb", "--model", str(tiny_model), "--init-text", "red", "--dir", str(folder)])
        == 0
    )
    return folder / "emb.pt"


def _steps(log: Path) -> list[int]:
    with open(log, encoding="utf-8", newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


# -- paths, checked before the model loads ---------------------------------------------------------


def test_log_dir_that_is_a_file(tmp_path, dataset, target):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli(*_train_args(NO_MODEL, dataset, target, blocker), cwd=tmp_path)
    assert_one_line_error(result, str(blocker))


def test_missing_dataset_and_template(tmp_path, dataset, target):
    result = run_cli(*_train_args(NO_MODEL, tmp_path / "no-dataset", target, tmp_path / "logs"), cwd=tmp_path)
    assert_one_line_error(result, str(tmp_path / "no-dataset"))
    result = run_cli(
        *_train_args(NO_MODEL, dataset, target, tmp_path / "logs", "--template", "no-such-template.txt"), cwd=tmp_path
    )
    assert_one_line_error(result, "no-such-template")


def test_read_only_target_folder_and_current_folder(read_only_dir, dataset, tiny_model, tmp_path):
    folder = read_only_dir.path / "embeddings"
    assert main(["create", "embedding", "emb", "--model", str(tiny_model), "--dir", str(folder)]) == 0
    read_only_dir.make_read_only()
    result = run_cli(*_train_args(NO_MODEL, dataset, folder / "emb.pt", tmp_path / "logs"), cwd=tmp_path)
    assert_one_line_error(result, str(folder))
    # Without --log-dir the logs go to ./textual_inversion/NAME, inside the read-only current folder.
    args = _train_args(NO_MODEL, dataset, tmp_path / "emb.pt", tmp_path / "logs")
    args = args[: args.index("--log-dir")] + args[args.index("--log-dir") + 2 :]
    (tmp_path / "emb.pt").write_bytes((folder / "emb.pt").read_bytes())
    result = run_cli(*args, cwd=read_only_dir.path)
    assert_one_line_error(result, str(read_only_dir.path / "textual_inversion"))


# -- signals -----------------------------------------------------------------------------------------


class _Lines:
    """The child's stderr, line by line, read by a thread so the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stderr,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, wanted: Callable[[str], bool]) -> str:
        while True:
            line = self._queue.get(timeout=300)  # a safety net against a hung child, not a timing assumption
            if line is None:
                raise AssertionError(f"the process ended before the line waited for:\n{''.join(self.lines)}")
            self.lines.append(line)
            if wanted(line):
                return line

    def rest(self) -> str:
        while (line := self._queue.get(timeout=300)) is not None:
            self.lines.append(line)
        return "".join(self.lines)


def _step_of(line: str) -> int:
    # The progress line "step 3/1000 · loss ..." -> 3; -1 for other lines
    if not line.startswith("step "):
        return -1
    return int(line[len("step ") :].split("/", 1)[0])


@pytest.mark.parametrize("twice", [False, True], ids=["sigterm", "sigint-twice"])
def test_signal_saves_the_current_state(tmp_path, tiny_model, dataset, target, twice):
    logs = tmp_path / "logs"
    # No periodic save: whatever is on disk after the signal was saved because of it. Four micro-batches
    # a step keep the run inside a step (and its save) for a while after the first signal.
    args = _train_args(tiny_model, dataset, target, logs, "--steps", "1000", "--save-every", "0", "--grad-accum", "4")
    proc = popen_cli(*args, cwd=tmp_path)
    lines = _Lines(proc)
    seen = _step_of(lines.wait_for(lambda line: _step_of(line) >= 2))
    if twice:
        proc.send_signal(signal.SIGINT)
        lines.wait_for(lambda line: "interrupting" in line)
        proc.send_signal(signal.SIGINT)  # while it is finishing the step and saving
    else:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    err = lines.rest()
    assert proc.returncode == (130 if twice else 143), err
    assert "terminate called" not in err and "Traceback" not in err, err
    assert "state saved" in err
    saved = load_embedding(target).step
    assert saved >= seen
    assert _steps(logs / "loss.csv") == list(range(1, saved + 1))


# -- kills ---------------------------------------------------------------------------------------------

# Runs the real CLI, but SIGKILLs itself at the moment the trained file is replaced on disk (after the
# rename, or just before it: the atomic write's temporary is then left behind, as by a real kill).
_KILL_AT_SAVE = """
import os, signal, sys
from embed_studio.cli import main
target, when, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
real_replace = os.replace
def replace(src, dst, *a, **k):
    if os.fspath(dst) == target and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *a, **k)
    if os.fspath(dst) == target and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
sys.exit(main(argv))
"""


def _killed_at_save(target: Path, when: str, args: list[str], cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AT_SAVE, str(target), when, *args],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_kill_between_log_and_file_leaves_no_gap_in_the_loss_log(tmp_path, tiny_model, dataset, target):
    logs = tmp_path / "logs"
    args = _train_args(tiny_model, dataset, target, logs, "--steps", "4", "--save-every", "2")
    _killed_at_save(target, "after", args, tmp_path)
    assert load_embedding(target).step == 2  # the file got its step-2 save, then the process died
    result = run_cli(*args, cwd=tmp_path)  # resumes at step 2
    assert result.returncode == 0, result.stderr
    assert load_embedding(target).step == 4
    assert _steps(logs / "loss.csv") == [1, 2, 3, 4]


def test_temporaries_of_a_killed_write_are_removed_by_the_next_run(tmp_path, tiny_model, dataset, target):
    logs = tmp_path / "logs"
    args = _train_args(tiny_model, dataset, target, logs, "--steps", "2", "--save-every", "0")
    _killed_at_save(target, "before", args, tmp_path)
    left = [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert left, "the kill should have left the atomic write's temporary"
    assert load_embedding(target).step == 0  # the old file untouched
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.parent.iterdir()) == ["emb.pt", "emb.pt.optim"]
