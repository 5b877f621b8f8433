"""`embed-studio inspect`: text and JSON summaries, exit code 1 for unreadable files."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from embed_studio.cli import main
from embed_studio.formats.embedding import EmbeddingData, save_embedding


def test_inspect_text(webui_files, tmp_path, capsys):
    ours = tmp_path / "ours.pt"
    save_embedding(EmbeddingData("inner", torch.randn(5, 768), step=3), ours)
    rc = main(["inspect", str(webui_files / "webui-made-emb.pt"), str(webui_files / "webui-made-hn.pt"), str(ours)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "webui-made-emb.pt: embedding" in out and "vectors: 3  dims: 32  step: 12" in out
    assert "checkpoint: tiny-sd1 [694637395a]" in out
    assert "webui-made-hn.pt: hypernetwork" in out and "sizes: 32, 64" in out and "layer structure: 1, 2, 1" in out
    assert "activation: swish" in out and "layer norm: yes" in out and "dropout: yes" in out
    assert "optimizer state (.optim): matches" in out
    # the torch 2.13-written fixture is flagged, ours passes
    assert "REJECTED" in out.split("ours.pt")[0]
    assert "name: inner" in out and "prompt word: ours" in out  # the WebUI names .pt embeddings by file name
    assert "vectors: 5  dims: 768  step: 3" in out and "WebUI safe loader: accepted" in out.split("ours.pt")[1]


def test_inspect_json_and_bad_file(webui_files, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    rc = main(
        [
            "inspect",
            "--json",
            str(bad),
            str(webui_files / "webui-made-emb-12.png"),
            str(webui_files / "webui-made-hn.pt"),
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert result[0]["file"] == str(bad) and "bad.pt" in result[0]["error"]
    png, hn = result[1], result[2]
    assert png["kind"] == "embedding" and (png["vectors"], png["dims"], png["step"]) == (3, 32, 11)
    assert png["prompt_word"] == "webui-made-emb-12"
    assert hn["kind"] == "hypernetwork" and hn["sizes"] == [32, 64] and hn["layer_structure"] == [1, 2, 1]
    assert hn["activation_func"] == "swish" and hn["is_layer_norm"] is True and hn["use_dropout"] is True
    assert hn["weight_initialization"] == "KaimingNormal" and hn["step"] == 12 and hn["sd_checkpoint"] == "694637395a"


def test_inspect_subprocess_reports_unreadable_file_on_one_line(webui_files, tmp_path):
    missing = tmp_path / "missing.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "embed_studio", "inspect", str(missing), str(webui_files / "webui-made-emb.pt.optim")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and "missing.pt" in errors[0]
    assert "optimizer state" in proc.stdout and "hash: b0f3" in proc.stdout
