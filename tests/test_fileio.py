"""Atomic writes: the old file survives any failure, no partial file under the final name."""

from __future__ import annotations

import pytest

from embed_studio.fileio import WriteError, atomic_write_bytes, atomic_write_text, atomic_writer, unique_path


def test_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_exception_mid_write_keeps_old_content(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("original")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"half")
            raise RuntimeError("disk pulled")
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_read_only_folder_gives_clear_error(read_only_dir):
    target = read_only_dir.path / "a.txt"
    target.write_text("kept")
    read_only_dir.make_read_only()
    with pytest.raises(WriteError, match="writable"):
        atomic_write_text(target, "x")
    assert target.read_text() == "kept"


def test_disk_full_keeps_old_file_and_leaves_no_partial(small_disk):
    target = small_disk / "emb.pt"
    target.write_bytes(b"old")
    with pytest.raises(WriteError, match="free disk space"):
        atomic_write_bytes(target, b"x" * 200_000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in small_disk.iterdir()] == ["emb.pt"]


def test_missing_folder_gives_clear_error(tmp_path):
    with pytest.raises(WriteError, match="exists"):
        atomic_write_text(tmp_path / "nope" / "a.txt", "x")


def test_permissions_of_replaced_file_are_kept(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("x")
    target.chmod(0o640)
    atomic_write_text(target, "y")
    assert target.stat().st_mode & 0o777 == 0o640


def test_unique_path(tmp_path):
    assert unique_path(tmp_path / "e.pt") == tmp_path / "e.pt"
    (tmp_path / "e.pt").write_text("")
    (tmp_path / "e-1.pt").write_text("")
    assert unique_path(tmp_path / "e.pt") == tmp_path / "e-2.pt"
