"""Per-installation UI preferences the user sets once (the standalone app's models folder), kept in one JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embed_studio.fileio import atomic_write_text


class Prefs:
    """A small JSON file of settings; a missing or damaged file reads as empty, a failed write is reported."""

    def __init__(self, path: Path | None):
        self.path = path

    def get(self, key: str, default: Any = None) -> Any:
        return self._read().get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self.path is None:
            return
        data = self._read()
        data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
