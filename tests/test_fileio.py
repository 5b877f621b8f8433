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


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from embed_studio.fileio import remove_stale_temps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {
        f".emb.pt.{dead_pid}-abcd1234.tmp": False,  # its writer is gone: removed
        f".emb.pt.{os.getpid()}-abcd1234.tmp": True,  # a write of this process may be under way: kept
        ".emb.pt.abcd1234.tmp": True,  # an older version's, written just now: kept
        ".old.pt.efgh5678.tmp": False,  # an older version's, two days old: removed
        ".notes.tmp": True,  # not one of ours
        "emb.pt": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(tmp_path / ".old.pt.efgh5678.tmp", (two_days_ago, two_days_ago))
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, keep in names.items() if not keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, keep in names.items() if keep)


def test_a_killed_atomic_write_leaves_a_temporary_the_next_cleanup_removes(tmp_path):
    import signal
    import subprocess
    import sys

    from embed_studio.fileio import remove_stale_temps

    code = (
        "import os, signal, sys\n"
        "from embed_studio.fileio import atomic_writer\n"
        "with atomic_writer(sys.argv[1]) as f:\n"
        "    f.write(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    target = tmp_path / "emb.pt"
    target.write_bytes(b"old")
    import os
    from pathlib import Path

    import embed_studio

    env = {**os.environ, "PYTHONPATH": str(Path(embed_studio.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, env=env, cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL
    assert len(list(tmp_path.iterdir())) == 2  # the old file and the temporary
    remove_stale_temps(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["emb.pt"] and target.read_bytes() == b"old"


def test_ensure_writable_dir_names_the_path(tmp_path, read_only_dir):
    from embed_studio.fileio import ensure_writable_dir

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for bad in (blocker, blocker / "sub"):
        with pytest.raises(WriteError, match=str(blocker)):
            ensure_writable_dir(bad, "log folder")
    assert ensure_writable_dir(tmp_path / "new" / "logs").is_dir()
    assert list((tmp_path / "new" / "logs").iterdir()) == []  # the probe is gone
    read_only_dir.make_read_only()
    with pytest.raises(WriteError, match=str(read_only_dir.path)):
        ensure_writable_dir(read_only_dir.path, "log folder")


def test_os_error_message_names_the_path_and_what_to_do(tmp_path):
    from embed_studio.fileio import os_error_message

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OSError) as err:
        (blocker / "sub").mkdir(parents=True)
    message = os_error_message(err.value)
    assert str(blocker) in message and "not a folder" in message and "\n" not in message
    assert os_error_message(ConnectionRefusedError(111, "Connection refused")) == "Connection refused."
