"""Atomic file writes and backups: every file the extension writes goes through here."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from embed_studio.errors import EmbedStudioError


class WriteError(EmbedStudioError):
    """A file could not be written (disk full, read-only folder, permissions)."""


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only once it is completely written.

    A crash, a full disk or an exception leaves the old file (if any) untouched and no
    partial file under the final name.
    """
    path = Path(path)
    try:
        # The pid in the name tells remove_stale_temps whether the writer is still alive.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteError(
            f"Cannot write into {path.parent}: {e.strerror}. Check the folder exists and is writable."
        ) from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            # mkstemp creates 0600 files; keep the permissions the replaced file had.
            shutil.copymode(path, tmp)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(
            f"Could not write {path}: {e.strerror or e}. Nothing was changed; free disk space or fix permissions and retry."
        ) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def unique_path(path: str | os.PathLike) -> Path:
    """`path` if it does not exist yet, else the first free `stem-N.suffix` beside it."""
    path = Path(path)
    if not path.exists():
        return path
    n = 1
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def backup_dir_name(prefix: str = "backup") -> str:
    """A sortable, unique-enough folder name for a backup taken now."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def os_error_message(e: OSError) -> str:
    """One line for an OSError that names the path and says what to do, for the CLI and the job runner."""
    names = [str(Path(os.fsdecode(n)).absolute()) for n in (e.filename, e.filename2) if n not in (None, "")]
    reason = e.strerror or str(e) or type(e).__name__
    hint = {
        errno.ENOTDIR: "a part of that path is a file, not a folder; pick a folder",
        errno.EEXIST: "a file of that name is in the way; pick a folder (or another name)",
        errno.EISDIR: "that is a folder; pick a file",
        errno.ENOENT: "check that it exists",
        errno.EACCES: "check its permissions",
        errno.EPERM: "check its permissions",
        errno.EROFS: "pick a folder on a writable disk",
        errno.ENOSPC: "free disk space and retry",
    }.get(e.errno or 0)
    if not names:  # a socket, a pipe, a URL: no path to name, and no path advice to give
        return f"{reason}; {hint}." if hint else f"{reason}."
    return f"{' -> '.join(names)}: {reason}; {hint or 'check the path and its permissions'}."


def ensure_writable_dir(folder: str | os.PathLike, what: str = "folder") -> Path:
    """Create `folder` if missing and prove a file can be written in it, before any long work starts.

    A write probe, not os.access: as root access() allows everything, while a read-only mount or a
    full disk still refuses the real write later.
    """
    folder = Path(folder).expanduser()
    try:
        if folder.exists() and not folder.is_dir():
            raise WriteError(f"The {what} {folder} is a file, not a folder. Pick a folder (or another name).")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".embed-studio-probe.{os.getpid()}-", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise WriteError(f"Cannot write into the {what}: {os_error_message(e)}") from e
    return folder


# atomic_writer's temporaries: ".NAME.<pid>-<random>.tmp" (older versions: ".NAME.<random>.tmp").
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp$")
_LEGACY_TEMP_AGE_S = 24 * 3600


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":
        return True  # os.kill would terminate it there; such temporaries go by age instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of atomic writes that a killed process left in `folder`; returns them.

    A temporary whose writing process is still alive is kept (it may be mid-write); one without a
    pid (older versions, or Windows) only once it is a day old.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for path in entries:
        m = _TEMP_NAME.match(path.name)
        if not m:
            continue
        try:
            if not path.is_file():
                continue
            pid = m.group("pid")
            stale = (
                not _pid_alive(int(pid)) if pid and os.name != "nt" else now - path.stat().st_mtime > _LEGACY_TEMP_AGE_S
            )
            if stale:
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # cleaning up is a courtesy; it never fails the work that called it
    return removed


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str = "lock") -> Iterator[None]:
    """Hold an exclusive lock on `folder` (its `name` file) against other threads and processes.

    For read-check-write sequences (a caption save checking nothing changed on disk, then writing):
    two of them on one folder run one after the other, so the second sees what the first wrote.
    """
    folder = Path(folder)
    key = str(folder.resolve() / name)
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(key, threading.Lock())
    with lock:
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(f"Cannot lock {folder} for writing: {os_error_message(e)}") from e
        try:
            _lock_fd(fd)
            yield
        finally:
            os.close(fd)  # closing drops the lock


def _lock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises
                return
            except OSError:
                continue
    fcntl.flock(fd, fcntl.LOCK_EX)
