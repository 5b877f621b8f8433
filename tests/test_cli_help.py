"""The CLI as a new user meets it: train --help explains every option, stays fast, and pipes into head."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embed_studio.cli import build_parser, main
from embed_studio.commands import train as train_command
from embed_studio.jobs import JobStatus
from embed_studio.progress import status_line
from embed_studio.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _train_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"]


def test_every_train_option_says_what_it_does():
    parser = _train_parser()
    vague = [
        "/".join(a.option_strings) for a in parser._actions
        if a.option_strings and (not a.help or a.help.startswith("default:") or a.help.startswith("("))
    ]  # fmt: skip
    assert vague == []
    skipped = train_command._POSITIONAL | train_command._NOT_ON_THE_COMMAND_LINE
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - skipped
    from embed_studio.train.option_help import BEYOND  # the options beyond the WebUI's trainer explain themselves

    explained = set(train_command.HELP) | set(BEYOND)
    assert fields <= explained, f"no help line for: {sorted(fields - explained)}"


def test_train_help_lists_each_flag_once_with_its_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    options = out[out.index("options:") :]
    flags = [line.split()[0].rstrip(",") for line in options.splitlines() if line.startswith("  -")]
    for line in options.splitlines():
        if line.startswith("  -"):
            names = [w.rstrip(",") for w in line.split() if w.startswith("--")]
            assert len(names) == len(set(names)), line
    assert len(flags) == len(set(flags))
    assert "--lr-scheduler {steps,cosine}" in options
    assert "--precision {auto,fp32,fp16,bf16}" in options
    assert "(default: 5)" in options.split("--grad-accum", 1)[1].split("--max-steps", 1)[0]


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom embed_studio.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.stderr.strip().endswith("NO-TORCH"), result.stderr[-2000:]


def test_a_closed_pipe_ends_quietly(tmp_path, make_image):
    make_image("a.png", folder=tmp_path / "data")
    # A pipe whose reader is already gone, as after `| head` has read its lines: every write fails at once.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "embed_studio", "train", "embedding", "--dataset", str(tmp_path / "data"),
               "--name", "zan", "--dry-run"]  # fmt: skip
    try:
        result = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120, env=env)
    finally:
        os.close(write_end)
    assert "BrokenPipeError" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 141


def test_dry_run_prints_each_images_prompts(tmp_path, make_image, capsys):
    data = tmp_path / "data"
    make_image("a.png", folder=data)
    make_image("b.png", folder=data)
    (data / "a.txt").write_text("zangoose_(pokemon), red eyes", encoding="utf-8")
    (data / "b.txt").write_text("solo, grey fur", encoding="utf-8")
    code = main([
        "train", "embedding", "--dataset", str(data), "--name", "zan", "--dry-run", "--no-shuffle-tags",
        "--template", "filewords_name",
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "a.png:\n  zangoose_\\(pokemon\\), red eyes, zan\n" in out  # brackets escaped, as the trainer does
    assert "b.png:\n  solo, grey fur, zan\n" in out
    assert not (tmp_path / "embeddings").exists()


def test_training_without_a_model_says_so(tmp_path, make_image, capsys):
    make_image("a.png", folder=tmp_path / "data")
    code = main(["train", "embedding", "--dataset", str(tmp_path / "data"), "--name", "zan"])
    assert code == 1
    assert "No model given" in capsys.readouterr().err


def _status(**stats) -> JobStatus:
    return JobStatus(
        id="train-1", kind="train", state="running", done=3, total=20, text="", started=0.0, finished=None,
        rate=None, eta_seconds=None, error=None, stats=stats,
    )  # fmt: skip


def test_status_line_names_the_images_a_step_sees():
    assert "batch 2 × 5 = 10 images a step" in status_line(_status(batch_size=2, grad_accum=5))
    assert "batch 2 ·" in status_line(_status(batch_size=2, grad_accum=1)) + " ·"
    assert "batch" not in status_line(_status())


def test_train_job_reports_its_batch_and_accumulation(tmp_path):
    import torch

    from embed_studio.backends.provider import StandaloneProvider
    from embed_studio.formats.embedding import EmbeddingData, save_embedding
    from embed_studio.train.job import make_train_job

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(_png())
    save_embedding(EmbeddingData("zan", torch.zeros(2, 32)), tmp_path / "zan.pt")  # checked before the model loads
    config = TrainConfig(
        kind="embedding", model=str(tmp_path / "no-such-model"), dataset=str(tmp_path / "data"),
        target=str(tmp_path / "zan.pt"), batch_size=2, grad_accum=5,
    )  # fmt: skip
    job = make_train_job(config, StandaloneProvider(tmp_path), log=lambda m: None)
    job.run()  # the model is missing: the job fails after reporting how it was set up
    assert job.status().state == "failed"
    assert "batch 2 × 5 = 10 images a step" in status_line(job.status())


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _tiny_sd():
    spec = importlib.util.spec_from_file_location("embed_studio_tests_tiny_sd", ROOT / "tests" / "train" / "tiny_sd.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_load_prints_no_library_advice(tmp_path, capfd):
    from embed_studio.backends.standalone import StandaloneBackend

    folder = _tiny_sd().build_tiny_sd(tmp_path / "tiny", "epsilon")
    capfd.readouterr()
    backend = StandaloneBackend.load(folder, "cpu")
    backend.configure("fp32")
    out, err = capfd.readouterr()
    assert out + err == ""


@pytest.mark.parametrize("command", ["fetch", "caption", "tag", "ui"])
def test_every_option_of_the_first_commands_says_what_it_does(command):
    # What a new user runs first, before train: fetch (or caption), tag, ui.
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    unexplained = [
        "/".join(a.option_strings) or a.dest for a in sub.choices[command]._actions
        if not a.help or a.help.startswith(("default:", "("))
    ]  # fmt: skip
    assert unexplained == []
