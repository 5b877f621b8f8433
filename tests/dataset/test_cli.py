"""`embed-studio tags ...` and `embed-studio images ...` run headless on a real folder."""

from __future__ import annotations

import json

from embed_studio.cli import main
from embed_studio.dataset.preprocess import split_boxes


def texts(folder):
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}


def test_tags_list_delete_undo(dataset, capsys):
    before = texts(dataset)
    assert main(["tags", str(dataset), "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"tag": "1girl", "images": 3, "share": 0.6}

    assert main(["tags", str(dataset), "delete", "blue hair", "gloves"]) == 0
    assert "backup" in capsys.readouterr().out
    assert all("blue hair" not in t and "gloves" not in t for t in texts(dataset).values())

    assert main(["tags", str(dataset), "undo"]) == 0
    assert texts(dataset) == before  # undo = restore the last backup, removing the sidecar it created
    assert main(["tags", str(dataset), "undo"]) == 1  # nothing left to undo: a clear error, exit 1
    assert "No caption backup" in capsys.readouterr().err


def test_tags_replace_add_front_with_filters_and_dry_run(dataset, capsys):
    before = texts(dataset)
    assert main(["tags", str(dataset), "replace", "nude", "--with", "nsfw", "--dry-run"]) == 0
    assert "would replace nude with nsfw in 1" in capsys.readouterr().out
    assert texts(dataset) == before
    main(["tags", str(dataset), "replace", "nude", "--with", "nsfw"])
    main(["tags", str(dataset), "add", "mychar", "--position", "start", "--has", "solo"])
    main(["tags", str(dataset), "front", "gloves", "--lacks", "solo"])
    t = texts(dataset)
    assert t["ünïcode [x].txt"] == "gloves, 1girl, blue hair, nsfw"
    assert t["a b.txt"].startswith("mychar, ") and t["00001-0 plain.txt"] == "mychar, solo, red eyes"
    assert main(["tags", str(dataset), "restore", "--list"]) == 0
    assert capsys.readouterr().out.count("save at") == 3


def test_tags_suggest(dataset, capsys):
    main(["tags", str(dataset), "list", "--suggest", "0.6", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [r["tag"] for r in out["candidates"]] == ["blue hair"]


def test_images_summary_dedupe_and_restore(tmp_path, noise, capsys):
    noise(1, (128, 64)).save(tmp_path / "a.png")
    (tmp_path / "a (1).png").write_bytes((tmp_path / "a.png").read_bytes())
    noise(2, (64, 64)).save(tmp_path / "b.png")
    assert main(["images", str(tmp_path), "summary", "--area", "512", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["images"] == 3 and sorted(s["no_caption"]) == ["a (1).png", "a.png", "b.png"]

    assert main(["images", str(tmp_path), "dedupe"]) == 0
    assert "1 duplicate(s)" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*.png"))) == 3  # a preview only
    assert main(["images", str(tmp_path), "dedupe", "--apply"]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 2
    assert main(["images", str(tmp_path), "restore"]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 3


def test_images_downscale_convert_flip_split(tmp_path, noise, capsys):
    noise(1, (400, 100)).save(tmp_path / "wide.webp")
    assert main(["images", str(tmp_path), "convert", "--format", "jpg"]) == 0
    assert (tmp_path / "wide.jpg").exists() and not (tmp_path / "wide.webp").exists()
    assert main(["images", str(tmp_path), "downscale", "--max-side", "200"]) == 0
    assert main(["images", str(tmp_path), "split", "--min-ratio", "3"]) == 0
    n = len(split_boxes(200, 50, 1.0, 0.2))
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == [f"wide-part{i}.jpg" for i in range(1, n + 1)]
    assert main(["images", str(tmp_path), "flip", "--dry-run"]) == 0
    assert f"would change {n}" in capsys.readouterr().out
    assert main(["images", str(tmp_path), "restore", "--list"]) == 0
    assert capsys.readouterr().out.count("kept") == 3
    for _ in range(3):
        assert main(["images", str(tmp_path), "restore"]) == 0
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["wide.webp"]


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["tags", str(tmp_path / "nope"), "list"]) == 1
    assert "does not exist" in capsys.readouterr().err
