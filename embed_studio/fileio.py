"""Atomic file writes and backups: every file the extension writes goes through here."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
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
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
