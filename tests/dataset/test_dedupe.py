"""Exact and near duplicates: found with a preview, moved to the trash, restorable."""

from __future__ import annotations

import shutil

import pytest

from embed_studio.dataset import dedupe
from embed_studio.dataset.trash import restore_trash
from embed_studio.errors import UserInputError


def test_perceptual_hash_survives_resize_and_reencode(tmp_path, noise):
    a = noise(1, (128, 128))
    near = dedupe.hamming(dedupe.perceptual_hash(a), dedupe.perceptual_hash(a.resize((80, 80))))
    far = dedupe.hamming(dedupe.perceptual_hash(a), dedupe.perceptual_hash(noise(2, (128, 128))))
    assert near <= 4 < 16 <= far


def test_find_and_remove_duplicates_then_restore(tmp_path, noise):
    noise(1, (128, 128)).save(tmp_path / "orig.png")
    shutil.copy(tmp_path / "orig.png", tmp_path / "orig (1).png")  # byte-identical browser copy
    noise(1, (64, 64)).convert("RGB").save(tmp_path / "small copy.jpg", quality=80)  # resized re-encode
    noise(9, (128, 128)).save(tmp_path / "other.png")
    (tmp_path / "orig (1).txt").write_text("dup caption", encoding="utf-8")
    (tmp_path / "orig.txt").write_text("keep caption", encoding="utf-8")

    report = dedupe.find_duplicates(tmp_path, threshold=8)
    assert len(report.groups) == 1
    group = report.groups[0]
    assert group.keep.name in ("orig.png", "orig (1).png")
    found = {d.path.name: d for d in group.duplicates}
    assert set(found) | {group.keep.name} == {"orig.png", "orig (1).png", "small copy.jpg"}
    assert found["small copy.jpg"].exact is False
    assert sum(d.exact for d in group.duplicates) == 1

    exact_only = dedupe.find_duplicates(tmp_path, near=False)
    assert exact_only.duplicate_count == 1

    batch = dedupe.remove_duplicates(tmp_path, report)
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert (
        "other.png" in left
        and "small copy.jpg" not in left
        and len([n for n in left if n.endswith((".png", ".jpg"))]) == 2
    )
    assert (batch.path / "small copy.jpg").exists()  # moved, not unlinked
    restore_trash(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        ["orig.png", "orig (1).png", "small copy.jpg", "other.png", "orig.txt", "orig (1).txt"]
    )


def test_shared_caption_stays_with_the_kept_image(tmp_path, noise):
    noise(1, (64, 64)).save(tmp_path / "a.png")
    shutil.copy(tmp_path / "a.png", tmp_path / "a.bmp")
    (tmp_path / "a.txt").write_text("shared", encoding="utf-8")
    report = dedupe.find_duplicates(tmp_path, near=False)
    dedupe.remove_duplicates(tmp_path, report)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "shared"


def test_threshold_is_validated(tmp_path):
    with pytest.raises(UserInputError):
        dedupe.find_duplicates(tmp_path, threshold=64)


def test_flat_images_of_different_colours_are_not_near_duplicates(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(tmp_path / "blue.png")
    Image.new("RGB", (32, 32), (250, 4, 2)).save(tmp_path / "red small.png")
    report = dedupe.find_duplicates(tmp_path, threshold=10)
    assert [sorted([g.keep.name] + [d.path.name for d in g.duplicates]) for g in report.groups] == [
        ["red small.png", "red.png"]
    ]
