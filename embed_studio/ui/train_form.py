"""The Train tab's form logic, free of gradio: form values to a TrainConfig, the files to train, run summaries."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from embed_studio.backends.provider import (
    CHECKPOINT_VAE,
    BackendProvider,
    folder_for,
    resolve_log_dir,
    resolve_target,
)
from embed_studio.dataset.folder import list_images, require_folder
from embed_studio.errors import DatasetError, EmbedStudioError, UserInputError
from embed_studio.jobs import CANCELLED, DONE, JobStatus
from embed_studio.train.config import DEFAULT_EMBEDDING_LR, DEFAULT_HYPERNETWORK_LR, KINDS, TrainConfig
from embed_studio.train.prompts import load_template_lines

# TrainConfig fields the form does not take from its generic field components: the kind, model, dataset,
# file and VAE have their own controls; the provider decides the device; `extra` is for the API.
OWN_CONTROLS = frozenset({"kind", "model", "dataset", "target", "vae", "device", "extra"})
TRAINABLE_SUFFIXES = {"embedding": (".pt", ".safetensors"), "hypernetwork": (".pt",)}
PREVIEW_FOLDERS_HIDDEN = ("image_embeddings",)  # the embedding-carrying cards repeat the plain previews


def form_fields() -> list[str]:
    """The TrainConfig fields the form shows one component each for, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in OWN_CONTROLS]


def default(name: str) -> Any:
    """TrainConfig's default for a field (the guides' recommendations)."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return None
    raise KeyError(name)


def default_lr(kind: str) -> str:
    return DEFAULT_HYPERNETWORK_LR if kind == "hypernetwork" else DEFAULT_EMBEDDING_LR


def swap_default_lr(kind: str, current: str) -> str:
    """The new kind's default when the box still holds the other kind's default; a typed schedule is kept."""
    current = (current or "").strip()
    if current in ("", DEFAULT_EMBEDDING_LR, DEFAULT_HYPERNETWORK_LR):
        return default_lr(kind)
    return current


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)


def coerce(name: str, value: Any, label: str | None = None) -> Any:
    """A form value as the field's type; raises UserInputError naming the field (by its label) when it is not."""
    kind = FIELD_TYPES[name]
    label = label or name.replace("_", " ")
    if kind is bool:
        return bool(value)
    if kind is str:
        return "" if value is None else str(value).strip()
    number = _number(value, label, default(name))
    if kind is int:
        return _whole(number, value, label)
    return number


def whole_number(value: Any, label: str) -> int:
    """A form value that must be a whole number, e.g. vectors per token."""
    return _whole(_number(value, label, None), value, label)


def _number(value: Any, label: str, fallback: Any) -> float:
    hint = f" (default {fallback})" if fallback is not None else ""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserInputError(f"{label} is empty; enter a number{hint}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{label} {value!r} is not a number{hint}.") from None


def _whole(number: float, value: Any, label: str) -> int:
    if number != int(number):
        raise UserInputError(f"{label} must be a whole number (got {value!r}).")
    return int(number)


def trainable_files(kind: str, provider: BackendProvider) -> list[str]:
    """Files of this kind in the provider's folder, as paths relative to it (the WebUI's folders nest)."""
    folder = folder_for(kind, provider)
    if not folder.is_dir():
        return []
    suffixes = TRAINABLE_SUFFIXES.get(kind, (".pt",))
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes]
    return sorted((p.relative_to(folder).as_posix() for p in found), key=str.lower)


MODEL_SUFFIXES = (".safetensors", ".ckpt")


def find_models(folder: str | None) -> list[str]:
    """Checkpoints and diffusers folders (model_index.json) in a models folder and one level below, as paths."""
    text = (folder or "").strip()
    root = Path(text).expanduser()
    if not text or not root.is_dir():
        return []
    found: list[str] = []

    def scan(directory: Path, depth: int) -> None:
        try:
            children = sorted(directory.iterdir())
        except OSError:
            return  # an unreadable subfolder lists nothing
        for child in children:
            if child.is_file() and child.suffix.lower() in MODEL_SUFFIXES:
                found.append(str(child))
            elif child.is_dir() and (child / "model_index.json").is_file():
                found.append(str(child))
            elif child.is_dir() and depth:
                scan(child, depth - 1)

    scan(root, 1)
    return sorted(found, key=str.lower)


def model_for(provider: BackendProvider, model_path: str | None) -> str:
    """The model a run records: the typed path (standalone) or the host's loaded model's title."""
    if provider.needs_model_path:
        text = (model_path or "").strip().strip('"')
        if not text:
            raise UserInputError("Enter the model: a diffusers folder or a .safetensors/.ckpt checkpoint file.")
        if not Path(text).expanduser().exists():
            raise UserInputError(f"Model {text} does not exist. Give a diffusers folder or a .safetensors/.ckpt file.")
        return text
    title = getattr(provider, "model_title", None)
    return (title() if callable(title) else "") or "the host's loaded model"


def build_config(
    provider: BackendProvider,
    *,
    kind: str,
    model_path: str | None,
    dataset: str | None,
    target: str | None,
    vae: str | None,
    values: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> tuple[TrainConfig, str]:
    """A validated TrainConfig and the VAE choice, or UserInputError/DatasetError with what to fix."""
    labels = labels or {}
    if kind not in KINDS:
        raise UserInputError(f"Pick what to train: {' or '.join(KINDS)}.")
    if not (dataset or "").strip():
        raise UserInputError("Enter the dataset folder (images with .txt captions) at the top of the tab.")
    dataset_path = require_folder(dataset.strip().strip('"'))
    if not list_images(dataset_path):
        raise DatasetError(f"{dataset_path} has no images. Put .png/.jpg/.webp images (with .txt captions) in it.")
    path = resolve_target(kind, target, provider)
    if not path.is_file():
        what = "Create embedding" if kind == "embedding" else "Create hypernetwork"
        raise UserInputError(f"{path} does not exist. Create it under '{what}' first, or pick an existing file.")
    fields = {name: coerce(name, values[name], labels.get(name)) for name in form_fields() if name in values}
    vae = vae or CHECKPOINT_VAE
    config = TrainConfig(
        kind=kind,
        model=model_for(provider, model_path),
        dataset=str(dataset_path),
        target=str(path),
        vae=vae,
        **fields,
    )
    config.log_dir = str(resolve_log_dir(config.log_dir, config.name, provider))  # the API's rule, one place
    if not config.templates_dir and provider.templates_dir is not None:
        config.templates_dir = str(provider.templates_dir)
    config.validate()
    # A missing template, or one an embedding cannot learn from, fails now rather than in the job.
    load_template_lines(config.template, config.templates_dir or None, require_name=kind == "embedding")
    return config, vae


def saved_run(kind: str, path: Path, provider: BackendProvider) -> TrainConfig:
    """The settings of the latest run that trained `path` (the config.json each run writes in its log folder)."""
    runs = []
    for candidate in Path(provider.log_dir).glob("*/config.json"):
        try:
            config = TrainConfig.load_json(candidate)
        except EmbedStudioError:
            continue  # a damaged or older file: not this run's
        if config.kind == kind and Path(config.target) == path:
            runs.append((candidate.stat().st_mtime, config))
    if not runs:
        raise UserInputError(
            f"No saved run settings for {path.name} in {provider.log_dir}: set the form and press Train (it resumes "
            "the file from its step too)."
        )
    return max(runs, key=lambda run: run[0])[1]


@dataclasses.dataclass
class TargetInfo:
    text: str
    step: int = 0
    clip_skip: int | None = None


def describe_target(kind: str, path: Path) -> TargetInfo:
    """One line about the picked file: its step (training continues there), size, CLIP skip, optimizer state."""
    from embed_studio.formats.optim import optim_path

    if not path.is_file():
        return TargetInfo(f"{path.name} does not exist yet: create it first.")
    try:
        if kind == "hypernetwork":
            from embed_studio.formats.hypernetwork import load_hypernetwork

            data: Any = load_hypernetwork(path)
            shape = (
                f"sizes {', '.join(map(str, data.sizes))}, layers {', '.join(f'{x:g}' for x in data.layer_structure)}"
            )
        else:
            from embed_studio.formats.embedding import load_embedding

            data = load_embedding(path)
            shape = f"{data.n_vectors} vector(s) of {data.dim}"
    except EmbedStudioError as e:
        return TargetInfo(f"Cannot read {path.name}: {e}")
    step = int(data.step or 0)
    recorded = (data.extra or {}).get("embed_studio", {}).get("clip_skip")
    parts = [f"**{path.name}**: {shape}"]
    if step:
        parts.append(f"at step {step}: Train continues from there")
        parts.append(
            "optimizer state saved beside it" if optim_path(path).is_file() else "no optimizer state beside it"
        )
    else:
        parts.append("new (step 0)")
    if data.sd_checkpoint_name or data.sd_checkpoint:
        parts.append(f"made on {data.sd_checkpoint_name or '?'} [{data.sd_checkpoint or 'no hash'}]")
    if recorded is not None:
        parts.append(f"trained with CLIP skip {recorded}")
    return TargetInfo(" · ".join(parts), step, int(recorded) if recorded is not None else None)


def preset_names(provider: BackendProvider) -> list[str]:
    from embed_studio.train.presets import list_presets, presets_folder

    return list_presets(presets_folder(provider.log_dir))


def save_form_preset(
    provider: BackendProvider, name: str, values: dict[str, Any], labels: dict[str, str] | None = None
) -> str:
    """Save the form's settings (each checked like Train checks it) as preset `name`; returns what was done."""
    from embed_studio.train.presets import preset_fields, presets_folder, save_preset

    labels = labels or {}
    settings = {k: coerce(k, values[k], labels.get(k)) for k in preset_fields() if k in values}
    path = save_preset(presets_folder(provider.log_dir), name, settings)
    return f"Saved preset **{path.stem}** ({path})."


def load_form_preset(provider: BackendProvider, name: str) -> dict[str, Any]:
    """The preset's settings by field name (fields it does not hold keep what the form shows)."""
    from embed_studio.train.presets import load_preset, presets_folder

    return load_preset(presets_folder(provider.log_dir), name)


def preview_gallery(images: list[str]) -> list[tuple[str, str]]:
    """Preview images newest first, captioned with their file name (name-step)."""
    shown = [p for p in images if Path(p).parent.name not in PREVIEW_FOLDERS_HIDDEN]
    return [(p, Path(p).stem) for p in reversed(shown)]


def finished_message(status: JobStatus, result: Any) -> str:
    """What the status line says once a run has ended: where the file is, how to resume, what went wrong."""
    target = status.stats.get("target", "the file")
    if status.state == DONE:
        if not hasattr(result, "stopped"):
            return f"Done. {status.text}"
        if result.stopped == "already-trained":
            text = f"Nothing to do: {status.text} Raise Max steps (or extend the schedule) to train on."
        elif result.stopped == "schedule-ended":
            text = (
                f"Stopped at step {result.step}: the learning-rate schedule ends there. "
                "End it with a bare rate (e.g. '…, 0.0001') to train up to Max steps."
            )
        else:
            text = f"Done: {Path(result.target).name} is at step {result.step} ({result.step - result.initial_step} this run)."
        text += f" Previews, copies and the loss log are in {result.log_dir}."
        warnings = list(getattr(result, "warnings", []) or [])
        if warnings:
            text += "\n\n" + "\n".join(f"⚠ {w}" for w in warnings)
        return text
    if status.state == CANCELLED:
        return (
            f"Interrupted ({status.text}). The state is saved in {target}; "
            "press Train with the same file to resume from there."
        )
    return f"**Training failed:** {status.error or status.state}"
