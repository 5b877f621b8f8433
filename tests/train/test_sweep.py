"""`embed-studio sweep`: the combinations, their folders and the results table, through the real CLI."""

from __future__ import annotations

import csv
import json
import queue
import signal
import sys
import threading
from pathlib import Path

import pytest
import torch

from embed_studio.errors import UserInputError
from embed_studio.formats.embedding import load_embedding
from embed_studio.train.sweep import SweepRun, plan_sweep, ranked

sys.path.insert(0, str(Path(__file__).parents[1]))
from cli_process import popen_cli, run_cli  # noqa: E402

FEW_STEPS = ["--steps", "3", "--gradient-accumulation", "1", "--batch-size", "2", "--width", "64", "--height", "64",
             "--bucket-step", "32", "--save-every", "0", "--preview-every", "0", "--seed", "5"]  # fmt: skip


def test_the_plan_is_the_product_with_typed_values_and_folders_named_after_them(tmp_path):
    sweep = plan_sweep(["learning_rate=0.005,0.002", "vectors=1,2", "flip-augment=on,off"], tmp_path)
    assert sweep.varied == {"lr": ["0.005", "0.002"], "vectors": [1, 2], "flip_augment": [True, False]}
    assert len(sweep.runs) == 8
    assert sweep.runs[0].settings == {"lr": "0.005", "vectors": 1, "flip_augment": True}
    assert sweep.runs[0].folder == tmp_path / "1-lr=0.005_vectors=1_flip_augment=on"
    assert len({run.folder for run in sweep.runs}) == 8
    schedule = plan_sweep(["lr=0.005:100, 0.001|0.002", "min_snr_gamma=0,5"], tmp_path)
    assert schedule.varied == {"lr": ["0.005:100, 0.001", "0.002"], "min_snr_gamma": [0.0, 5.0]}
    assert "/" not in schedule.runs[0].folder.name and " " not in schedule.runs[0].folder.name


@pytest.mark.parametrize(
    ("varies", "says"),
    [
        (["learning_rat=1,2"], "not a setting a sweep can vary"),
        (["dataset=a,b"], "not a setting a sweep can vary"),
        (["lr"], "SETTING=VALUE"),
        (["max_steps=5,five"], "'five' is not a whole number"),
        (["flip_augment=maybe"], "not on/off"),
        (["lr=0.1,0.1"], "appears twice"),
        (["lr=0.1", "learning_rate=0.2"], "given twice"),
        ([], "Nothing to sweep"),
        (["seed=" + ",".join(map(str, range(9))), "lr=" + ",".join(f"0.{i}" for i in range(1, 9))], "at most"),
    ],
)
def test_a_bad_vary_is_one_line_saying_what_to_write(tmp_path, varies, says):
    with pytest.raises(UserInputError, match=says) as e:
        plan_sweep(varies, tmp_path)
    assert "\n" not in str(e.value)


def test_finished_runs_rank_by_validation_then_training_loss_and_failures_come_last(tmp_path):
    runs = [SweepRun(i, {}, tmp_path / str(i)) for i in range(1, 5)]
    for run, status, loss, val in zip(
        runs, ["done", "failed", "done", "done"], [0.3, 0.1, 0.2, 0.1], [0.5, None, 0.4, None], strict=True
    ):
        run.status, run.final_loss, run.validation_loss = status, loss, val
    assert [r.index for r in ranked(runs)] == [3, 1, 4, 2]


def _table(out: Path) -> list[dict]:
    with open(out / "sweep.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_a_two_by_two_sweep_trains_four_files_and_ranks_their_losses(tmp_path, tiny_model, dataset):
    out = tmp_path / "sweep"
    result = run_cli(
        "sweep", dataset, "--model", tiny_model, "--vary", "learning_rate=0.05,0.001", "--vary", "vectors=1,2",
        "--init-text", "hair", "--validation-split", "0.34", "--validation-every", "3", "--out", out, *FEW_STEPS,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = _table(out)
    assert len(rows) == 4 and all(r["status"] == "done" and r["step"] == "3" for r in rows)
    assert {(r["lr"], r["vectors"]) for r in rows} == {("0.05", "1"), ("0.05", "2"), ("0.001", "1"), ("0.001", "2")}
    val = [float(r["validation_loss"]) for r in rows]
    assert val == sorted(val)  # best first
    # The printed table: a header and the four runs in the same order.
    printed = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert printed[0][:3] == ["#", "lr", "vectors"] and len(printed) == 5
    assert [p[1] for p in printed[1:]] == [r["lr"] for r in rows]
    data = json.loads((out / "sweep.json").read_text())
    assert [r["run"] for r in data["runs"]] == [r["run"] for r in rows]
    # Each run trained its own file in its own folder; the settings show in what they learned.
    files = {(r["lr"], r["vectors"]): load_embedding(out / r["run"] / f"{dataset.name}.pt") for r in rows}
    assert {k: f.vectors.shape[0] for k, f in files.items()} == {k: int(k[1]) for k in files}
    assert all(f.step == 3 for f in files.values())
    assert not torch.equal(files[("0.05", "1")].vectors, files[("0.001", "1")].vectors)
    assert len({r["final_loss"] for r in rows}) == 4 and len(set(val)) == 4
    for r in rows:
        config = json.loads((out / r["run"] / "config.json").read_text())
        assert config["lr"] == r["lr"] and config["seed"] == 5 and config["log_dir"] == str(out / r["run"])


class _Lines:
    """A child's stderr read by a thread, so the test can wait for a line."""

    def __init__(self, proc):
        self.seen: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(
            target=lambda: [*map(self._queue.put, proc.stderr), self._queue.put(None)], daemon=True
        ).start()

    def wait_for(self, wanted) -> str:
        while (line := self._queue.get(timeout=300)) is not None:  # a net against a hung child, not a timing
            self.seen.append(line)
            if wanted(line):
                return line
        raise AssertionError("ended before the line waited for:\n" + "".join(self.seen))

    def rest(self) -> str:
        while (line := self._queue.get(timeout=300)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def test_a_failing_and_a_killed_run_are_reported_and_the_others_go_on(tmp_path, tiny_model, dataset):
    import os

    out = tmp_path / "sweep"
    # lr 1e30 diverges at once (NaN loss: the run fails); the second run is killed by the test.
    proc = popen_cli(
        "sweep", dataset, "--model", tiny_model, "--vary", "lr=1e30,0.01,0.02", "--out", out, *FEW_STEPS, cwd=tmp_path
    )
    lines = _Lines(proc)
    started = lines.wait_for(lambda line: line.startswith("run #2/3"))
    os.kill(int(started.rsplit("pid ", 1)[1].rstrip(")\n")), signal.SIGKILL)
    stdout = proc.stdout.read()
    assert proc.wait(timeout=300) == 1, lines.rest()
    lines.rest()
    rows = {r["lr"]: r for r in _table(out)}
    assert rows["1e30"]["status"] == "failed" and "loss became" in rows["1e30"]["message"]
    assert rows["0.01"]["status"] == "killed" and "SIGKILL" in rows["0.01"]["message"]
    assert rows["0.02"]["status"] == "done" and rows["0.02"]["step"] == "3"
    assert [r["status"] for r in _table(out)] == ["done", "failed", "killed"]
    assert "killed" in stdout and "failed" in stdout


def test_ctrl_c_lets_the_current_run_save_and_stops_the_sweep(tmp_path, tiny_model, dataset):
    out = tmp_path / "sweep"
    long_run = [a if a != "3" else "1000" for a in FEW_STEPS]
    proc = popen_cli("sweep", dataset, "--model", tiny_model, "--vary", "lr=0.01,0.02", "--out", out, *long_run,
                     cwd=tmp_path)  # fmt: skip
    lines = _Lines(proc)
    lines.wait_for(lambda line: line.startswith("[#1] step 2/"))
    proc.send_signal(signal.SIGINT)
    stdout = proc.stdout.read()
    assert proc.wait(timeout=300) == 130, lines.rest()
    err = lines.rest()
    assert "Traceback" not in err, err
    rows = {r["lr"]: r for r in _table(out)}
    assert rows["0.01"]["status"] == "interrupted" and rows["0.02"]["status"] == "not run"
    saved = load_embedding(out / rows["0.01"]["run"] / f"{dataset.name}.pt")
    assert saved.step >= 2 and str(saved.step) == rows["0.01"]["step"]
    assert not (out / rows["0.02"]["run"] / "loss.csv").exists()
    assert "interrupted" in stdout


def test_the_sweep_refuses_a_used_folder_and_a_log_dir(tmp_path, tiny_model, dataset):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    for extra, says in ((["--out", tmp_path / "used"], "not empty"), (["--log-dir", tmp_path / "l"], "--out")):
        result = run_cli("sweep", dataset, "--model", tiny_model, "--vary", "lr=0.1,0.2", *extra, cwd=tmp_path)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 1 and len(errors) == 1 and says in errors[0], result.stderr
