"""The loss log CSV (step, epoch, loss, lr, images/s), rewritten atomically so a crash never leaves half a file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from embed_studio.fileio import atomic_write_text

COLUMNS = ("step", "epoch", "loss", "lr", "images_per_s")


class LossLog:
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        if path.is_file():
            # A resumed run keeps the earlier rows (up to where it resumes).
            with open(path, encoding="utf-8", newline="") as f:
                self.rows = [row for row in csv.DictReader(f) if row.get("step")]
        self._dirty = False

    def truncate_after(self, step: int) -> None:
        kept = [r for r in self.rows if int(float(r["step"])) <= step]
        # Rows past the file's step (a kill after the log was saved, before the file): rewritten without them.
        self._dirty = self._dirty or len(kept) != len(self.rows)
        self.rows = kept

    def add(self, step: int, epoch: int, loss: float, lr: float, images_per_s: float) -> None:
        self.rows.append(
            {
                "step": step,
                "epoch": epoch,
                "loss": f"{loss:.7f}",
                "lr": f"{lr:.10g}",
                "images_per_s": f"{images_per_s:.3f}",
            }
        )
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, buf.getvalue())
        self._dirty = False
