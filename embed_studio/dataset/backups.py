"""Caption backups inside a dataset: <dataset>/.embed-studio/backups/<name>/, listed and restored."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from embed_studio.errors import DatasetError
from embed_studio.fileio import (
    WriteError,
    atomic_write_bytes,
    atomic_write_text,
    backup_dir_name,
    folder_lock,
    os_error_message,
    remove_stale_temps,
    unique_path,
)

STATE_DIR = ".embed-studio"
MANIFEST = "manifest.json"


def state_dir(folder: str | os.PathLike) -> Path:
    """The dataset's hidden folder for backups and trash (list_images skips dot-folders)."""
    return Path(folder) / STATE_DIR


def backups_root(folder: str | os.PathLike) -> Path:
    return state_dir(folder) / "backups"


@contextlib.contextmanager
def caption_writer(folder: str | os.PathLike) -> Iterator[None]:
    """One caption writer at a time on a dataset (a save, a restore), from any thread or process.

    A save checks that no caption changed on disk since the dataset was read, then writes: two saves
    at once both passed the check and both "succeeded", one silently overwriting the other's edits.
    """
    folder = Path(folder)
    state = state_dir(folder)
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"Cannot write into the dataset: {os_error_message(e)}") from e
    with folder_lock(state, "captions.lock"):
        remove_stale_temps(folder)  # what a save killed mid-write left
        yield


def put_back(kept: Path, dest: Path) -> None:
    """Replace `dest` by the kept copy `kept` of its earlier content.

    By a hard link renamed into place where the filesystem allows: no data is written, so it works on the
    full disk that made a save fail. Else an atomic copy.
    """
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        os.link(kept, tmp)
    except OSError:
        atomic_write_bytes(dest, kept.read_bytes())
        return
    try:
        os.replace(tmp, dest)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def is_read_only(path: Path) -> bool:
    """True when `path` has no write permission bits, or this process may not write it.

    Checked on the mode bits too: running as root, os.access() says yes to everything, yet a
    file the user marked read-only should still not be overwritten behind their back.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return not (mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) or not os.access(path, os.W_OK)


def check_writable(files: list[Path]) -> None:
    """Raise DatasetError naming the files (or folders) that cannot be written, before writing any."""
    bad: list[str] = []
    for folder in sorted({p.parent for p in files}):
        if is_read_only(folder):
            bad.append(f"{folder} (folder)")
    for p in files:
        if p.is_dir():
            bad.append(f"{p.name} (is a folder)")
        elif is_read_only(p):
            bad.append(p.name)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DatasetError(
            f"Cannot write {shown}: read-only. Nothing was written; make them writable "
            "(or pick a writable copy of the dataset) and save again."
        )


@dataclass
class BackupInfo:
    """One backup folder: which caption files it holds and which ones did not exist before."""

    path: Path
    kind: str  # "save" (captions replaced by a save) or "restore" (state before a restore)
    created: float
    replaced: list[str] = field(default_factory=list)  # relative paths whose old text is in the folder
    absent: list[str] = field(default_factory=list)  # relative paths that did not exist before
    restored: bool = False
    label: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        done = " (restored)" if self.restored else ""
        return f"{self.name}: {self.kind} at {when}, {len(self.replaced)} replaced, {len(self.absent)} new{done}"


def _write_manifest(info: BackupInfo) -> None:
    data = {
        "kind": info.kind,
        "created": info.created,
        "replaced": info.replaced,
        "absent": info.absent,
        "restored": info.restored,
        "label": info.label,
    }
    atomic_write_text(info.path / MANIFEST, json.dumps(data, indent=1, ensure_ascii=False))


def create_backup(folder: Path, files: list[Path], kind: str = "save", label: str = "") -> BackupInfo:
    """Copy the current content of `files` (paths inside `folder`) into a new backup folder."""
    root = backups_root(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = unique_path(root / backup_dir_name(kind))
        path.mkdir()
    except OSError as e:
        raise WriteError(f"Cannot create a backup folder in {root}: {e.strerror}. Nothing was written.") from e
    info = BackupInfo(path=path, kind=kind, created=time.time(), label=label)
    for f in files:
        rel = f.relative_to(folder).as_posix()
        if f.is_file():
            dest = path / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            _keep(f, dest)
            info.replaced.append(rel)
        else:
            info.absent.append(rel)
    _write_manifest(info)
    return info


def _keep(src: Path, dest: Path) -> None:
    """Keep `src`'s current content at `dest`: a hard link when the filesystem allows, else a copy.

    A link costs no data write, and stays the old content because every writer here replaces
    files by rename (a new inode) instead of writing into them.
    """
    try:
        os.link(src, dest)
    except OSError:
        atomic_write_bytes(dest, src.read_bytes())


def list_backups(folder: str | os.PathLike) -> list[BackupInfo]:
    """Backups of the dataset, newest first; folders without a readable manifest are skipped."""
    root = backups_root(folder)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        try:
            data = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append(
            BackupInfo(
                path=d,
                kind=data.get("kind", "save"),
                created=float(data.get("created", 0)),
                replaced=list(data.get("replaced", [])),
                absent=list(data.get("absent", [])),
                restored=bool(data.get("restored", False)),
                label=data.get("label", ""),
            )
        )
    return sorted(found, key=lambda b: (b.created, b.name), reverse=True)


def find_backup(folder: str | os.PathLike, name: str | None = None) -> BackupInfo:
    """The named backup, or the newest save backup not restored yet (what "undo" brings back)."""
    backups = list_backups(folder)
    if name:
        for b in backups:
            if b.name == name:
                return b
        raise DatasetError(
            f"No backup named {name!r} in {backups_root(folder)}. List them with `tags DIR restore --list`."
        )
    for b in backups:
        if b.kind == "save" and not b.restored:
            return b
    raise DatasetError(f"No caption backup to restore in {folder}: nothing was saved over yet.")


@dataclass
class RestoreResult:
    backup: BackupInfo
    restored: list[Path]  # files put back
    removed: list[Path]  # sidecars the save had created, taken away again
    safety: BackupInfo  # the state just before this restore, itself restorable


def restore_backup(folder: str | os.PathLike, name: str | None = None) -> RestoreResult:
    """Put the captions of a backup back; the current ones are backed up first (kind "restore")."""
    folder = Path(folder)
    info = find_backup(folder, name)
    targets = [folder / rel for rel in info.replaced + info.absent]
    check_writable(targets)
    with caption_writer(folder):
        safety = create_backup(folder, targets, kind="restore", label=f"before restoring {info.name}")
        restored, removed = [], []
        try:
            for rel in info.replaced:
                put_back(info.path / rel, folder / rel)
                restored.append(folder / rel)
            for rel in info.absent:
                target = folder / rel
                if target.is_file():
                    # The sidecar did not exist before that save; its current text is in `safety`.
                    target.unlink()
                    removed.append(target)
        except (OSError, WriteError) as e:
            raise DatasetError(
                f"Restore stopped at {e}: the state before it is in backup {safety.name}; restore that to go back."
            ) from e
        info.restored = True
        _write_manifest(info)
    return RestoreResult(backup=info, restored=restored, removed=removed, safety=safety)
