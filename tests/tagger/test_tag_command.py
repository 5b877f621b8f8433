"""`embed-studio tag DIR --model PATH` headless."""

from __future__ import annotations

from embed_studio.cli import main
from embed_studio.dataset.folder import read_caption


def test_tag_command_writes_captions(dataset, tiny_tagger, tmp_path, capsys):
    args = ["tag", str(dataset), "--model", str(tiny_tagger.folder), "--models-dir", str(tmp_path / "cache")]
    assert main([*args, "--add", "my_oc", "--exclude", "solo", "--general-threshold", "0.55"]) == 0
    out = capsys.readouterr().out
    assert "3 caption(s) written, 0 skipped, 0 failed" in out
    tags = read_caption(dataset / "red.png").split(", ")
    assert tags[0] == "my_oc" and "solo" not in tags and "looking at viewer" not in tags


def test_tag_command_dry_run_prints_and_writes_nothing(dataset, tiny_tagger, tmp_path, capsys):
    code = main(
        ["tag", str(dataset), "--model", str(tiny_tagger.folder), "--models-dir", str(tmp_path / "c"), "--dry-run", "1"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("blue.webp: ") and "hatsune miku" in out
    assert list(dataset.glob("*.txt")) == []


def test_tag_command_errors_are_messages(tmp_path, capsys):
    assert main(["tag", str(tmp_path / "missing"), "--model", "wd14-convnext"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["tag"]) == 1
    assert "Give the dataset folder" in capsys.readouterr().err
    assert main(["tag", "--list-models"]) == 0
    assert "SmilingWolf/wd-eva02-large-tagger-v3" in capsys.readouterr().out


def test_tag_command_categories_and_merge_order(dataset, tiny_tagger, tmp_path, capsys):
    args = ["tag", str(dataset), "--model", str(tiny_tagger.folder), "--models-dir", str(tmp_path / "cache")]
    assert main([*args, "--categories", "general"]) == 0
    assert "hatsune miku" not in read_caption(dataset / "blue.webp")  # character tags left out
    assert main([*args, "--on-existing", "merge", "--merge-order", "character,general"]) == 0
    assert read_caption(dataset / "blue.webp").startswith("hatsune miku, ")  # merged in, characters first
    capsys.readouterr()
    assert main([*args, "--categories", "general,colour"]) == 1
    assert "Unknown tagger categories ['colour']" in capsys.readouterr().err
    assert main([*args, "--category-thresholds", "species:0.3"]) == 1
    assert "category=value" in capsys.readouterr().err
