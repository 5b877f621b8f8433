"""The dataset's trash: image operations move what they replace or remove here, and restore it."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from embed_studio.dataset.backups import MANIFEST, check_writable, state_dir
from embed_studio.errors import DatasetError
from embed_studio.fileio import WriteError, atomic_write_text, backup_dir_name, unique_path


def trash_root(folder: str | os.PathLike) -> Path:
    return state_dir(folder) / "trash"


@dataclass
class TrashBatch:
    """What one image operation removed (moved here) and created, so that it can be undone.

    Moving instead of deleting: nothing a user had is ever unlinked by an image operation.
    """

    folder: Path
    kind: str
    label: str = ""
    path: Path | None = None
    created_at: float = field(default_factory=time.time)
    moved: list[str] = field(default_factory=list)  # relative paths now kept in the batch folder
    created: list[str] = field(default_factory=list)  # relative paths the operation wrote
    restored: bool = False

    @property
    def name(self) -> str:
        return self.path.name if self.path else ""

    def _ensure_dir(self) -> Path:
        if self.path is None:
            root = trash_root(self.folder)
            try:
                root.mkdir(parents=True, exist_ok=True)
                self.path = unique_path(root / backup_dir_name(self.kind))
                self.path.mkdir()
            except OSError as e:
                raise WriteError(
                    f"Cannot create {root}: {e.strerror}. Nothing was changed; make the dataset writable."
                ) from e
        return self.path

    def move(self, file: Path) -> None:
        """Move `file` (inside the dataset) into the batch folder, keeping its relative name."""
        rel = file.relative_to(self.folder).as_posix()
        dest = self._ensure_dir() / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(file, dest)
        except OSError as e:
            raise WriteError(f"Cannot move {file.name} to the trash: {e.strerror}.") from e
        self.moved.append(rel)

    def add_created(self, file: Path) -> None:
        self.created.append(file.relative_to(self.folder).as_posix())

    def __enter__(self) -> TrashBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        # Also after an error or a cancel: what was done so far stays restorable.
        if self.moved or self.created:
            self.save()

    def save(self) -> None:
        """Write the manifest (on leaving the `with` block, error or not)."""
        data = {
            "kind": self.kind,
            "label": self.label,
            "created_at": self.created_at,
            "moved": self.moved,
            "created": self.created,
            "restored": self.restored,
        }
        atomic_write_text(self._ensure_dir() / MANIFEST, json.dumps(data, indent=1, ensure_ascii=False))

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created_at))
        done = " (restored)" if self.restored else ""
        return f"{self.name}: {self.label or self.kind} at {when}, {len(self.moved)} kept, {len(self.created)} created{done}"


def list_trash(folder: str | os.PathLike) -> list[TrashBatch]:
    """Batches in the trash, newest first."""
    root = trash_root(folder)
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        try:
            data = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append(
            TrashBatch(
                folder=Path(folder),
                kind=data.get("kind", ""),
                label=data.get("label", ""),
                path=d,
                created_at=float(data.get("created_at", 0)),
                moved=list(data.get("moved", [])),
                created=list(data.get("created", [])),
                restored=bool(data.get("restored", False)),
            )
        )
    return sorted(out, key=lambda b: (b.created_at, b.name), reverse=True)


def restore_trash(folder: str | os.PathLike, name: str | None = None) -> TrashBatch:
    """Undo an image operation: remove the files it created, move back the files it kept.

    Without `name`, the newest batch not restored yet.
    """
    folder = Path(folder)
    batches = list_trash(folder)
    pick = [b for b in batches if (b.name == name if name else not b.restored)]
    if not pick:
        raise DatasetError(
            f"No trash batch named {name!r} in {trash_root(folder)}."
            if name
            else f"Nothing to restore in {folder}: no image operation to undo."
        )
    batch = pick[0]
    assert batch.path is not None
    check_writable([folder / rel for rel in batch.moved + batch.created])
    created = set(batch.created)
    taken = [rel for rel in batch.moved if rel not in created and (folder / rel).exists()]
    if taken:
        # A file made since then under the same name would be overwritten: the user decides.
        raise DatasetError(
            f"Cannot restore {batch.name}: {', '.join(taken[:5])} exist(s) again in the dataset. "
            "Move or rename them first; nothing was changed."
        )
    for rel in batch.created:
        # Files the operation made (resized copies, flips, parts) are derived; the originals come back.
        (folder / rel).unlink(missing_ok=True)
    for rel in batch.moved:
        src = batch.path / rel
        if src.exists():
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
    batch.restored = True
    batch.save()
    return batch
