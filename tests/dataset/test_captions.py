"""The caption model: loading, the tag index, batch edits, undo/redo, save with backup, restore."""

from __future__ import annotations

import os
import stat

import pytest

from embed_studio.dataset import backups
from embed_studio.dataset import captions as captions_mod
from embed_studio.dataset.captions import DatasetCaptions, filename_to_tags
from embed_studio.errors import DatasetError, UserInputError
from embed_studio.fileio import WriteError


def texts(folder):
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}


def test_load_reads_sidecars_and_file_name_tags(dataset):
    ds = DatasetCaptions.load(dataset)
    assert len(ds) == 5
    by_name = {p.name: i for i, p in enumerate(ds.images)}
    assert ds.tags_of(by_name["ünïcode [x].png"]) == ("1girl", "blue hair", "nude", "gloves")
    assert ds.tags_of(by_name["tags, in, name.png"]) == ("tags", "in", "name")
    assert ds.sources[by_name["tags, in, name.png"]] == "filename"
    assert ds.sources[by_name["a b.png"]] == "txt"
    assert not ds.dirty


def test_filename_tags_strip_copies_and_preprocessor_prefix():
    assert filename_to_tags("1girl, solo (1).jpg") == ["1girl", "solo"]
    assert filename_to_tags("00001-0 1girl, blue hair.png") == ["1girl", "blue hair"]
    assert filename_to_tags("00012-3-long hair.png") == ["long hair"]
    assert filename_to_tags("0123456789abcdef0123456789abcdef.png") == []
    assert filename_to_tags("123456.jpg") == []


def test_filename_tags_can_be_turned_off(dataset):
    ds = DatasetCaptions.load(dataset, filename_tags=False)
    i = [p.name for p in ds.images].index("tags, in, name.png")
    assert ds.tags_of(i) == () and ds.sources[i] == "none"


def test_tag_table_counts_shares_search_and_sort(dataset):
    ds = DatasetCaptions.load(dataset)
    rows = ds.tag_table()
    assert rows[0].tag == "1girl" and rows[0].images == 3 and rows[0].share == pytest.approx(3 / 5)
    assert [r.images for r in rows] == sorted((r.images for r in rows), reverse=True)
    assert [r.tag for r in ds.tag_table("HAIR")] == ["blue hair"]
    alpha = [r.tag for r in ds.tag_table(sort="tag")]
    assert alpha == sorted(alpha, key=str.lower)
    scoped = ds.tag_table(indices=ds.filter(has=["nude"]))
    assert {r.tag: r.share for r in scoped}["gloves"] == 1.0
    with pytest.raises(UserInputError):
        ds.tag_table(sort="size")


def test_filter_has_lacks_any_and_text(dataset):
    ds = DatasetCaptions.load(dataset)
    names = lambda idx: sorted(ds.images[i].name for i in idx)  # noqa: E731
    assert names(ds.filter(has=["1girl", "solo"])) == ["a b.png", "name (1).png"]
    assert names(ds.filter(has="nude, red eyes", match_any=True)) == ["00001-0 plain.png", "ünïcode [x].png"]
    assert names(ds.filter(has=["1girl"], lacks=["solo"])) == ["ünïcode [x].png"]
    assert names(ds.filter(text="ÜNÏ")) == ["ünïcode [x].png"]
    assert ds.filter(has=["no such tag"]) == []


def test_delete_everywhere_and_in_filtered_scope(dataset):
    ds = DatasetCaptions.load(dataset)
    edit = ds.delete_tags(["blue hair", "gloves"])
    assert edit.image_count == 3
    assert ds.count("blue hair") == 0 and ds.count("gloves") == 0 and "gloves" not in ds.all_tags()
    ds.undo()
    only_nude = ds.filter(has=["nude"])
    ds.delete_tags("gloves", only_nude)
    assert ds.count("gloves") == 1  # "a b.png" was outside the scope


def test_replace_puts_new_tag_where_the_first_old_one_was(dataset):
    ds = DatasetCaptions.load(dataset)
    i = [p.name for p in ds.images].index("ünïcode [x].png")
    ds.replace_tags(["nude", "gloves"], "nsfw")
    assert ds.tags_of(i) == ("1girl", "blue hair", "nsfw")
    ds.replace_tags("blue hair", "1girl")  # already present: not repeated
    assert ds.tags_of(i) == ("1girl", "nsfw")
    with pytest.raises(UserInputError):
        ds.replace_tags("solo", "")


def test_add_at_positions_and_move_to_front(dataset):
    ds = DatasetCaptions.load(dataset)
    i = [p.name for p in ds.images].index("a b.png")
    ds.add_tags("mychar", "start")
    assert ds.tags_of(i)[0] == "mychar" and ds.count("mychar") == 5
    ds.add_tags("x", 2)
    assert ds.tags_of(i)[2] == "x"
    ds.add_tags("z")
    assert ds.tags_of(i)[-1] == "z"
    ds.move_to_front(["smile", "solo"])
    assert ds.tags_of(i)[:2] == ("smile", "solo")
    with pytest.raises(UserInputError):
        ds.add_tags("y", "middle")
    with pytest.raises(UserInputError):
        ds.delete_tags([])


def test_undo_redo_every_operation_restores_exact_state(dataset):
    ds = DatasetCaptions.load(dataset)
    start = [ds.tags_of(i) for i in range(len(ds))]
    ops = [
        lambda: ds.delete_tags("solo"),
        lambda: ds.replace_tags("nude", "nsfw"),
        lambda: ds.add_tags("mychar", "start"),
        lambda: ds.move_to_front("gloves"),
        lambda: ds.set_caption(0, "only, this"),
    ]
    states = [start]
    for op in ops:
        op()
        states.append([ds.tags_of(i) for i in range(len(ds))])
    assert len(ds.history) == 5
    for expected in reversed(states[:-1]):
        ds.undo()
        assert [ds.tags_of(i) for i in range(len(ds))] == expected
    assert not ds.dirty and ds.undo() is None
    for expected in states[1:]:
        ds.redo()
        assert [ds.tags_of(i) for i in range(len(ds))] == expected
    assert ds.redo() is None
    # The index follows undo/redo too.
    ds.undo()
    ds.undo()
    assert ds.count("mychar") == 5 and ds.count("nsfw") == 1


def test_new_edit_after_undo_drops_the_redo_branch_and_noops_are_not_recorded(dataset):
    ds = DatasetCaptions.load(dataset)
    ds.delete_tags("solo")
    ds.undo()
    ds.delete_tags("gloves")
    assert not ds.can_redo
    assert ds.delete_tags("not there").image_count == 0
    assert ds.history == ["delete gloves"]


def test_nothing_touches_disk_until_save_then_backup_and_restore(dataset):
    before = texts(dataset)
    ds = DatasetCaptions.load(dataset)
    ds.delete_tags("blue hair")
    ds.add_tags("mychar", "start")
    assert texts(dataset) == before and ds.dirty
    result = ds.save()
    assert not ds.dirty
    after = texts(dataset)
    assert after["a b.txt"] == "mychar, 1girl, solo, smile, gloves"
    assert after["tags, in, name.txt"] == "mychar, tags, in, name"  # file-name tags now in a sidecar
    assert result.count == 5 and result.backup is not None
    assert (result.backup.path / "ünïcode [x].txt").read_text(encoding="utf-8") == before["ünïcode [x].txt"]
    assert result.backup.absent == ["tags, in, name.txt"]
    assert ds.save().count == 0  # nothing left to write

    restored = backups.restore_backup(dataset)
    assert texts(dataset) == before
    assert [p.name for p in restored.removed] == ["tags, in, name.txt"]
    # The restore itself kept the saved state, and the restored backup is not restored twice.
    assert backups.find_backup(dataset, restored.safety.name).kind == "restore"
    with pytest.raises(DatasetError, match="No caption backup"):
        backups.restore_backup(dataset)
    backups.restore_backup(dataset, restored.safety.name)
    assert texts(dataset) == after


def test_save_writes_only_changed_captions(dataset):
    ds = DatasetCaptions.load(dataset)
    ds.delete_tags("red eyes")
    mtimes = {p.name: p.stat().st_mtime_ns for p in dataset.glob("*.txt")}
    result = ds.save()
    assert [p.name for p in result.written] == ["00001-0 plain.txt"]
    assert {p.name: p.stat().st_mtime_ns for p in dataset.glob("*.txt") if p.name != "00001-0 plain.txt"} == {
        k: v for k, v in mtimes.items() if k != "00001-0 plain.txt"
    }
    assert result.backup.replaced == ["00001-0 plain.txt"]


def test_backup_keeps_old_text_through_later_saves(dataset):
    before = texts(dataset)
    ds = DatasetCaptions.load(dataset)
    ds.delete_tags("solo")
    first = ds.save().backup
    ds.delete_tags("1girl")
    ds.save()
    assert (first.path / "a b.txt").read_text(encoding="utf-8") == before["a b.txt"]
    backups.restore_backup(dataset, first.name)
    assert texts(dataset)["a b.txt"] == before["a b.txt"]


def test_save_after_undo_writes_original_back(dataset):
    before = texts(dataset)
    ds = DatasetCaptions.load(dataset)
    ds.delete_tags("solo")
    ds.save()
    ds.undo()
    assert ds.dirty
    ds.save()
    assert texts(dataset) == before


def test_read_only_caption_refuses_save_and_writes_nothing(dataset):
    before = texts(dataset)
    ro = dataset / "name (1).txt"
    os.chmod(ro, stat.S_IRUSR | stat.S_IRGRP)
    try:
        ds = DatasetCaptions.load(dataset)
        ds.delete_tags("1girl")
        with pytest.raises(DatasetError, match=r"name \(1\)\.txt.*read-only"):
            ds.save()
        assert texts(dataset) == before
        assert ds.dirty  # the edits are still there to save elsewhere or retry
        assert not backups.list_backups(dataset)
    finally:
        os.chmod(ro, 0o644)


def test_read_only_folder_refuses_save(dataset):
    ds = DatasetCaptions.load(dataset)
    ds.delete_tags("solo")
    mode = dataset.stat().st_mode
    os.chmod(dataset, stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(DatasetError, match="read-only"):
            ds.save()
    finally:
        os.chmod(dataset, mode)


def test_failure_midway_puts_written_captions_back(dataset, monkeypatch):
    before = texts(dataset)
    ds = DatasetCaptions.load(dataset)
    ds.add_tags("mychar")
    real = captions_mod.atomic_write_text
    calls = []

    def flaky(path, text):
        calls.append(path)
        if len(calls) == 3:  # the disk fills up on the third caption
            raise WriteError(f"Could not write {path}: No space left on device.")
        real(path, text)

    monkeypatch.setattr(captions_mod, "atomic_write_text", flaky)
    with pytest.raises(DatasetError, match="put back"):
        ds.save()
    assert texts(dataset) == before
    assert ds.dirty
    monkeypatch.setattr(captions_mod, "atomic_write_text", real)
    assert ds.save().count == 5  # once the disk has room again, the same edits save


def test_save_refuses_when_a_caption_changed_on_disk(dataset):
    ds = DatasetCaptions.load(dataset)
    ds.delete_tags("solo")
    target = dataset / "a b.txt"
    target.write_text("edited elsewhere", encoding="utf-8")
    os.utime(target, ns=(1, 1))
    with pytest.raises(DatasetError, match="changed on disk"):
        ds.save()
    assert target.read_text(encoding="utf-8") == "edited elsewhere"


def test_suggest_character_tags_separates_generic_ones(dataset):
    ds = DatasetCaptions.load(dataset)
    s = ds.suggest_character_tags(0.6)
    assert [r.tag for r in s.candidates] == ["blue hair"]
    assert {r.tag for r in s.generic} == {"1girl", "solo"}
    assert [r.tag for r in ds.suggest_character_tags(0.3).candidates][:2] == ["blue hair", "gloves"]
    with pytest.raises(UserInputError):
        ds.suggest_character_tags(0)


def test_complete_prefers_dataset_tags_then_booru_list(dataset):
    ds = DatasetCaptions.load(dataset)
    assert ds.complete("blu", ["blue eyes", "blush", "blue hair"]) == ["blue hair", "blue eyes", "blush"]
    assert ds.complete("hai", ["hair bow"], limit=1) == ["blue hair"]
    assert ds.complete("") == []


def test_empty_folder_and_missing_folder_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="No images"):
        DatasetCaptions.load(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        DatasetCaptions.load(tmp_path / "nope")


def test_bom_and_multiline_captions(tmp_path, build):
    folder = build(tmp_path / "bom", {"a.png": "\ufeff1girl, solo\n"})
    ds = DatasetCaptions.load(folder)
    assert ds.tags_of(0) == ("1girl", "solo")
    ds.set_caption(0, "1girl\nsmile, solo")
    assert ds.tags_of(0) == ("1girl", "smile", "solo")
