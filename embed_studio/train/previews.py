"""Preview images during training: one image per N steps, and for embeddings a PNG carrying the embedding."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embed_studio.backends.base import PreviewRequest
from embed_studio.fileio import atomic_write_bytes
from embed_studio.train.config import TrainConfig
from embed_studio.train.data import derive_seed


def preview_request(config: TrainConfig, step: int, last_prompt: str) -> PreviewRequest:
    """The preview prompt (or the last training prompt) at a fixed seed, sampler, steps, CFG and size."""
    return PreviewRequest(
        prompt=config.preview_prompt or last_prompt,
        negative_prompt=config.preview_negative_prompt,
        steps=config.preview_steps,
        cfg_scale=config.preview_cfg_scale,
        # A negative seed means "random" in the WebUI; derive one so a rerun still draws the same images.
        seed=config.preview_seed if config.preview_seed >= 0 else derive_seed(config.seed, "preview", step) % 2**32,
        width=config.preview_width or config.width,
        height=config.preview_height or config.height,
        sampler=config.preview_sampler,
        scheduler=config.preview_scheduler,
    )


def save_previews(
    config: TrainConfig,
    target: Any,
    step: int,
    last_prompt: str,
    log_dir: Path,
    snapshot: Any,
    on_drawing: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Render and write images/<name>-<step>.png (+ image_embeddings/ for embeddings); returns the paths.

    `on_drawing(n, total)` is called before image n of the `total` this step draws (for the progress line)."""
    from embed_studio.train.preview_grid import parse_preview_prompts

    request = preview_request(config, step, last_prompt)
    extras = parse_preview_prompts(config.preview_prompts, request) if config.preview_prompts.strip() else []
    drawing = on_drawing or (lambda n, total: None)
    drawing(1, 1 + len(extras))
    image = target.preview(request)
    path = preview_path(config, log_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    images_dir = path.parent
    _write_png(image, path)
    written = [path]
    if extras:
        written.append(_extra_previews(config, target, step, request, image, images_dir, extras, drawing))
    if config.kind == "embedding" and config.preview_with_embedding:
        from embed_studio.formats.embedding import save_png_with_embedding

        embed_dir = log_dir / "image_embeddings"
        embed_dir.mkdir(parents=True, exist_ok=True)
        embed_path = embed_dir / f"{config.name}-{step}.png"
        save_png_with_embedding(image, snapshot, embed_path, caption=f"<{snapshot.name}>")
        written.append(embed_path)
    return written


def preview_path(config: TrainConfig, log_dir: Path, step: int, number: int = 0) -> Path:
    """images/<name>-<step>.png, or for extra preview prompt `number` images/<name>-<step>-<number>.png."""
    return log_dir / "images" / (f"{config.name}-{step}" + (f"-{number}" if number else "") + ".png")


def preview_images(config: TrainConfig, log_dir: Path, step: int) -> list[Path]:
    """Every image the previews of `step` drew (not the grid or the embedding-carrying copy)."""
    from embed_studio.train.preview_grid import parse_preview_prompts

    extra = (
        len(parse_preview_prompts(config.preview_prompts, PreviewRequest(prompt="")))
        if config.preview_prompts.strip()
        else 0
    )
    return [preview_path(config, log_dir, step, n) for n in range(extra + 1)]


def _write_png(image: Any, path: Path) -> None:
    buf = io.BytesIO()
    info = None
    parameters = getattr(image, "info", {}).get("parameters")
    if isinstance(parameters, str):
        from PIL.PngImagePlugin import PngInfo

        # The WebUI's generation parameters, as its own previews keep them (its PNG Info tab reads them back).
        info = PngInfo()
        info.add_text("parameters", parameters)
    image.save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(path, buf.getvalue())


def _extra_previews(
    config: TrainConfig,
    target: Any,
    step: int,
    first: PreviewRequest,
    image: Any,
    folder: Path,
    extras: list[PreviewRequest],
    drawing: Callable[[int, int], None],
) -> Path:
    """The extra preview prompts (each with its own settings) as <name>-<step>-<n>.png, and all of them, the usual
    preview first, side by side in <name>-<step>-grid.png; returns the grid."""
    from embed_studio.train.preview_grid import image_grid

    images, labels = [image], [first.prompt]
    for n, request in enumerate(extras, 1):
        drawing(n + 1, len(extras) + 1)
        if request.seed < 0:
            request.seed = derive_seed(config.seed, "preview", step, n) % 2**32
        extra = target.preview(request)
        _write_png(extra, preview_path(config, folder.parent, step, n))
        images.append(extra)
        sampler = request.sampler if request.scheduler == "Automatic" else f"{request.sampler} {request.scheduler}"
        labels.append(f"{request.prompt} (seed {request.seed}, {sampler}, {request.steps} steps)")
    grid = folder / f"{config.name}-{step}-grid.png"
    _write_png(image_grid([images], [f"step {step}"], labels), grid)
    return grid
