"""Named training presets: a run's settings (not its model, data or file) saved as JSON and loaded into a form or run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from embed_studio.errors import UserInputError
from embed_studio.fileio import atomic_write_text
from embed_studio.train.config import TrainConfig

PRESETS_FOLDER = "_presets"  # beside the run folders in the log root (a run is named after its file, never "_...")
FORMAT = 1
# What a run trains on and where it writes: per run, so a preset never carries them.
PER_RUN = frozenset(
    {"kind", "model", "dataset", "target", "name", "log_dir", "device", "vae", "templates_dir", "extra"}
    | {"score_models_dir"}  # the host's tagger folder, like its templates folder
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


def presets_folder(log_root: str | os.PathLike) -> Path:
    return Path(log_root) / PRESETS_FOLDER


def preset_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in PER_RUN]


def preset_path(folder: str | os.PathLike, name: str) -> Path:
    """The preset's file in `folder`; the name is checked, so it cannot point anywhere else."""
    name = (name or "").strip()
    if not _NAME.match(name) or name.endswith(".") or ".." in name:
        raise UserInputError(
            f"Preset name {name!r} is not usable: use up to 64 letters, digits, spaces, '_', '-' or '.', "
            "starting with a letter or digit."
        )
    return Path(folder) / f"{name}.json"


def list_presets(folder: str | os.PathLike) -> list[str]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p.stem for p in folder.glob("*.json") if _NAME.match(p.stem)), key=str.lower)


def save_preset(folder: str | os.PathLike, name: str, settings: dict[str, Any] | TrainConfig) -> Path:
    """Write the preset (atomically; an existing preset of that name is replaced: saving is how it is updated)."""
    values = dataclasses.asdict(settings) if isinstance(settings, TrainConfig) else dict(settings)
    kept = {k: values[k] for k in preset_fields() if k in values}
    path = preset_path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"format": FORMAT, "settings": kept}, indent=2, sort_keys=True) + "\n")
    return path


def load_preset(folder: str | os.PathLike, name: str) -> dict[str, Any]:
    """The preset's settings, checked: only known, non-per-run fields, each of its field's type."""
    path = preset_path(folder, name)
    if not path.is_file():
        known = ", ".join(list_presets(folder)) or "none yet"
        raise UserInputError(f"No preset named {name!r} in {Path(folder)} (saved presets: {known}).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserInputError(f"Preset {path} cannot be read: {e}. Save it again.") from e
    settings = data.get("settings") if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        raise UserInputError(f"Preset {path} holds no settings. Save it again.")
    fields = set(preset_fields())
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise UserInputError(f"Preset {name!r} has settings this version does not know: {', '.join(unknown)}.")
    hints = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for key, value in settings.items():
        kind = {"int": int, "float": float, "bool": bool, "str": str}.get(str(hints[key]))
        ok = kind is None or isinstance(value, kind) or (kind is float and type(value) is int)
        if not ok or (kind in (int, float) and isinstance(value, bool)):
            raise UserInputError(f"Preset {name!r}: {key} is {value!r}, which is not a {kind.__name__}.")
    return settings
