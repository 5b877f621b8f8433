"""Find a tagger's files: a local folder, or a registry model downloaded from the hub once."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embed_studio.errors import NetworkError, UserInputError
from embed_studio.tagger.registry import ModelSpec, find_spec, model_names

TAG_CSV_NAMES = ("selected_tags.csv", "tags-selected.csv")
# Standalone default; inside the WebUI the host passes its models folder instead.
DEFAULT_CACHE = Path(
    os.environ.get("EMBED_STUDIO_MODELS")
    or Path(os.environ.get("EMBED_STUDIO_HOME", Path.home() / ".cache" / "embed-studio")) / "models"
)

# (file name, bytes done, bytes total or None)
DownloadProgress = Callable[[str, int, "int | None"], None]


@dataclass
class ModelFiles:
    """A tagger ready to load: the ONNX file, its tag list, and the registry entry if any."""

    name: str
    model_path: Path
    tags_path: Path
    spec: ModelSpec | None = None


def _local_files(path: Path) -> ModelFiles:
    if path.is_file():
        if path.suffix.lower() != ".onnx":
            raise UserInputError(
                f"{path} is not an .onnx file. Give a folder holding model.onnx and selected_tags.csv."
            )
        folder, model = path.parent, path
    else:
        folder = path
        model = folder / "model.onnx"
        if not model.is_file():
            onnx_files = sorted(folder.glob("*.onnx"))
            if len(onnx_files) != 1:
                raise UserInputError(
                    f"{folder} holds no model.onnx{' (and several other .onnx files)' if onnx_files else ''}. "
                    "Put the tagger's model.onnx and selected_tags.csv in that folder."
                )
            model = onnx_files[0]
    tags = next((folder / n for n in TAG_CSV_NAMES if (folder / n).is_file()), None)
    if tags is None:
        csvs = sorted(folder.glob("*.csv"))
        if len(csvs) != 1:
            raise UserInputError(
                f"{folder} has no selected_tags.csv beside {model.name}. Copy the model's tag CSV into that folder."
            )
        tags = csvs[0]
    return ModelFiles(name=folder.name if model.name == "model.onnx" else model.stem, model_path=model, tags_path=tags)


def _progress_tqdm(callback: DownloadProgress, filename: str):
    """A tqdm class that forwards byte counts to `callback` (the hub reports through tqdm)."""
    from tqdm.auto import tqdm

    class _Forward(tqdm):
        def __init__(self, *args, **kwargs):
            # The caller's progress line shows the bytes: a bar of the hub's own on stderr would draw over it.
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._bytes = int(kwargs.get("initial") or 0)  # a disabled tqdm stops counting

        def update(self, n=1):
            self._bytes += int(n or 0)
            callback(filename, self._bytes, int(self.total) if self.total else None)

    return _Forward


def _download(
    spec: ModelSpec, filename: str, cache_dir: Path, endpoint: str | None, progress: DownloadProgress | None
) -> Path:
    from huggingface_hub import hf_hub_download

    kwargs: dict = {"cache_dir": str(cache_dir)}
    if endpoint:
        kwargs["endpoint"] = endpoint
    try:
        # Already downloaded: no network round trip at all (works offline).
        return Path(hf_hub_download(spec.repo_id, filename, local_files_only=True, **kwargs))
    except Exception:  # not cached yet (the hub raises several different types for that)
        pass
    if progress is not None:
        progress(filename, 0, None)
        if "tqdm_class" in inspect.signature(hf_hub_download).parameters:  # older hub versions lack it
            kwargs["tqdm_class"] = _progress_tqdm(progress, filename)
    try:
        path = Path(hf_hub_download(spec.repo_id, filename, **kwargs))
    except Exception as e:
        raise NetworkError(
            f"Could not download {filename} of {spec.name} from the Hugging Face hub ({type(e).__name__}: {e}). "
            f"Check the connection, or download model.onnx and {spec.tags_file} from "
            f"https://huggingface.co/{spec.repo_id} into a folder and give that folder as the model."
        ) from e
    if progress is not None:
        size = path.stat().st_size
        progress(filename, size, size)
    return path


def resolve_model(
    name_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    *,
    endpoint: str | None = None,
    progress: DownloadProgress | None = None,
) -> ModelFiles:
    """The files of a registry model (downloaded on first use) or of a local model folder."""
    text = str(name_or_path).strip()
    if not text:
        raise UserInputError("No tagger model chosen. Pick one from the list or give a folder holding model.onnx.")
    spec = find_spec(text)
    path = Path(text).expanduser()
    if spec is None or path.exists():
        if path.exists():
            return _local_files(path)
        raise UserInputError(f"Unknown tagger model {text!r}: not a folder, and not one of {', '.join(model_names())}.")
    cache = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(
            f"Cannot create the model cache folder {cache}: {e.strerror}. Pick a writable folder."
        ) from e
    # The small tag list first: a wrong repo or no network fails before a 400 MB transfer.
    tags = _download(spec, spec.tags_file, cache, endpoint, progress)
    model = _download(spec, spec.model_file, cache, endpoint, progress)
    return ModelFiles(name=spec.name, model_path=model, tags_path=tags, spec=spec)
