"""Where a training run gets its model: the host-specific half of "train", behind one protocol.

The standalone app loads a diffusers model from a path; the WebUI lends its loaded model, under
its GPU lock, with its CLIP skip and VAE state restored afterwards. The train tab and the API
only see this protocol.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from embed_studio.backends.base import Backend
from embed_studio.errors import UserInputError

CHECKPOINT_VAE = "Checkpoint's own VAE"


class BackendProvider(Protocol):
    name: str  # "standalone" or "webui"
    needs_model_path: bool  # True: the form asks for a model; False: the host's loaded model is used
    embeddings_dir: Path
    hypernetworks_dir: Path
    templates_dir: Path | None  # extra prompt templates (the WebUI's textual_inversion_templates)
    log_dir: Path  # default parent of run folders (copies, previews, loss log)
    # Optional: more folders the user allowed files and logs in (the WebUI's Settings); read with getattr.
    # extra_folders: tuple[Path, ...]

    def describe(self) -> str:
        """One line for the form: the model training will use, its hash, the VAE and the CLIP skip."""

    def default_clip_skip(self) -> int:
        """The CLIP skip a new run uses (the WebUI's setting; 1 standalone)."""

    def default_size(self, model: str = "") -> int:
        """The side of the training area a new run uses: 1024 on SDXL, else 512."""

    def vae_choices(self) -> list[str]:
        """VAEs the form offers; the first is CHECKPOINT_VAE."""

    def session(self, model: str, vae: str, clip_skip: int) -> AbstractContextManager[Backend]:
        """Exclusive use of a Backend for one run; the host's state is restored on exit, also on error."""

    def refresh(self, kind: str, path: Path) -> None:
        """Make a file just written visible to the host (the WebUI's embedding and hypernetwork lists)."""


SDXL_SIDE = 1024  # default_size() says SDXL with this side


def new_run_defaults(provider: BackendProvider, model: str = "") -> dict[str, Any]:
    """Settings a new run takes from its model where the user gave none (CLI, form, API alike): SDXL's 1024x1024
    area, and gradient checkpointing on SDXL, where batch 1 at 1024x1024 fits 12 GB only with it (on SD 1.x/2.x it
    would only slow the run)."""
    side = int(provider.default_size(model))
    return {"width": side, "height": side, "gradient_checkpointing": side >= SDXL_SIDE}


def apply_new_run_defaults(values: dict[str, Any], provider: BackendProvider, model: str = "") -> dict[str, Any]:
    """`values` (a run's settings as given) with new_run_defaults() filled in where absent; the area only when
    neither side was given."""
    defaults = new_run_defaults(provider, model)
    if "width" not in values and "height" not in values:
        values["width"], values["height"] = defaults["width"], defaults["height"]
    values.setdefault("gradient_checkpointing", defaults["gradient_checkpointing"])
    return values


def folder_for(kind: str, provider: BackendProvider) -> Path:
    return Path(provider.hypernetworks_dir if kind == "hypernetwork" else provider.embeddings_dir)


def allowed_folders(kind: str, provider: BackendProvider) -> list[Path]:
    """Where a file of `kind` named by a client may be: the kind's folder and the folders the user allowed."""
    return [folder_for(kind, provider), *_extra_folders(provider)]


def parse_folders(text: str) -> tuple[Path, ...]:
    """A comma-separated list of folders (a setting) as paths; empty items are skipped."""
    return tuple(Path(item.strip()).expanduser() for item in str(text or "").split(",") if item.strip())


def _extra_folders(provider: BackendProvider) -> list[Path]:
    return [Path(p) for p in getattr(provider, "extra_folders", ()) or ()]


def resolve_target(kind: str, value: str | None, provider: BackendProvider) -> Path:
    """The file to train: a name relative to the kind's folder ('.pt' optional; the WebUI's folders nest), or a
    typed absolute path inside that folder or one the user allowed.

    A client (the form, the API) names it, and training rewrites it and writes a .optim beside it, so it is
    confined here: no '..', nothing outside those folders.
    """
    text = (value or "").strip().strip('"')
    if not text:
        what = "an embedding" if kind == "embedding" else "a hypernetwork"
        raise UserInputError(f"Pick the file to train: {what} from the list, or create one first.")
    path = _confined(
        text, folder_for(kind, provider), allowed_folders(kind, provider), f"The {kind} file", _settings_hint(provider)
    )
    if path.suffix.lower() not in (".pt", ".safetensors"):
        safetensors = path.with_name(path.name + ".safetensors")
        path = path.with_name(path.name + ".pt")
        if kind == "embedding" and not path.exists() and safetensors.exists():
            path = safetensors  # SDXL embeddings are .safetensors
    return path


def resolve_log_dir(value: str | None, name: str, provider: BackendProvider) -> Path:
    """A run's log folder (copies, previews, loss log, its config): relative to the provider's log folder,
    default <log folder>/<name>, confined like the file to train, and a folder that can be made."""
    text = (value or "").strip().strip('"') or name
    base = Path(provider.log_dir)
    path = _confined(text, base, [base, *_extra_folders(provider)], "The log folder", _settings_hint(provider))
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserInputError(f"The log folder {path} cannot be made: {existing} is a file. Pick another log folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(f"The log folder {path} cannot be written ({existing} is read-only). Pick another.")
    return path


def _settings_hint(provider: BackendProvider) -> str:
    return ", or allow its folder in Settings → Embed Studio" if getattr(provider, "name", "") == "webui" else ""


def _confined(text: str, base: Path, allowed: list[Path], label: str, hint: str = "") -> Path:
    """`text` (relative to `base`, or absolute) as a path inside one of `allowed`, or UserInputError.

    Checked on the path as written, not through symbolic links: a link inside an allowed folder was put there by
    the user, while '..' and absolute paths are what a client would use to get out.
    """
    path = Path(text).expanduser()
    if "\0" in text:
        raise UserInputError(f"{label} {text!r} is not a valid name.")
    if ".." in path.parts:
        raise UserInputError(f"{label} {text!r} may not contain '..'; name it inside {base}.")
    absolute = Path(os.path.abspath(base / path))
    for folder in allowed:
        folder = Path(os.path.abspath(folder))
        if absolute != folder and absolute.is_relative_to(folder):
            return absolute if path.is_absolute() else base / path
    where = ", ".join(str(f) for f in allowed)
    raise UserInputError(f"{label} {text!r} is outside {where}: name it inside {base}{hint}.")


class StandaloneProvider:
    """Loads diffusers models from a folder or a single checkpoint file, keeping the last one loaded."""

    name = "standalone"
    needs_model_path = True
    templates_dir = None

    def __init__(self, output_dir: Path, device: str | None = None):
        self.embeddings_dir = output_dir / "embeddings"
        self.hypernetworks_dir = output_dir / "hypernetworks"
        self.log_dir = output_dir / "train"
        self.device = device
        self._lock = threading.Lock()  # one model, one run at a time
        self._loaded: tuple[str, Any] | None = None

    def describe(self) -> str:
        if self._loaded:
            return f"Model: {self._loaded[0].split('|')[0]} (loaded)"
        return "Model: the diffusers folder or checkpoint file given below"

    def default_clip_skip(self) -> int:
        return 1

    def default_size(self, model: str = "") -> int:
        from embed_studio.backends.standalone import default_size_for

        return default_size_for(model) if model else 512

    def vae_choices(self) -> list[str]:
        return [CHECKPOINT_VAE]

    @contextlib.contextmanager
    def session(self, model: str, vae: str = CHECKPOINT_VAE, clip_skip: int = 1) -> Iterator[Backend]:
        from embed_studio.backends.standalone import StandaloneBackend

        if not model:
            raise UserInputError("Choose a model: a diffusers folder or a .safetensors/.ckpt checkpoint file.")
        if not self._lock.acquire(blocking=False):
            raise UserInputError("A training run is already using the model; cancel it or wait for it to end.")
        try:
            key = f"{model}|{vae}"
            if self._loaded is None or self._loaded[0] != key:
                self._loaded = None  # free the old model before loading the next
                backend = StandaloneBackend.load(model, self.device)
                if vae and vae != CHECKPOINT_VAE:
                    if not hasattr(backend, "use_vae"):
                        raise UserInputError(
                            f"A separate VAE is used for SDXL models only here; {Path(model).name} trains with its own."
                        )
                    backend.use_vae(vae)
                self._loaded = (key, backend)
            yield self._loaded[1]
        finally:
            self._lock.release()

    def refresh(self, kind: str, path: Path) -> None:
        """Standalone has no list to refresh: the tab re-reads the folders."""

    def loaded_backend(self) -> Any | None:
        """The model loaded by the last run, if any (never loads one): for reading its vocabulary, not training."""
        return self._loaded[1] if self._loaded else None

    def preview_samplers(self) -> list[str]:
        """Every diffusers scheduler the loaded model takes (before one is loaded: SD's, the same list)."""
        from embed_studio.backends.standalone import available_samplers

        return self._loaded[1].samplers() if self._loaded else available_samplers()

    def preview_schedulers(self) -> list[str]:
        """The WebUI's schedule types the diffusers samplers have rows for (Karras: a sampler's _karras row)."""
        from embed_studio.backends.samplers import STANDALONE_SCHEDULERS

        return list(STANDALONE_SCHEDULERS)


class LoadedBackendProvider:
    """A backend already in memory, lent as it is: for scripts and tests that load their own model."""

    name = "loaded"
    needs_model_path = False
    templates_dir = None

    def __init__(self, backend: Backend, output_dir: Path):
        self.backend = backend
        self.embeddings_dir = output_dir / "embeddings"
        self.hypernetworks_dir = output_dir / "hypernetworks"
        self.log_dir = output_dir / "train"

    def describe(self) -> str:
        return f"Model: {getattr(self.backend, 'checkpoint_name', None) or 'loaded'}"

    def default_clip_skip(self) -> int:
        return 1

    def default_size(self, model: str = "") -> int:
        return int(getattr(self.backend, "default_size", 512))

    def vae_choices(self) -> list[str]:
        return [CHECKPOINT_VAE]

    @contextlib.contextmanager
    def session(self, model: str = "", vae: str = CHECKPOINT_VAE, clip_skip: int = 1) -> Iterator[Backend]:
        yield self.backend

    def refresh(self, kind: str, path: Path) -> None:
        """Nothing to refresh."""
