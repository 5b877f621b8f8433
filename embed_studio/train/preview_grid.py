"""Several preview prompts, each with its own settings, and labelled image grids (prompts side by side, steps down)."""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from embed_studio.backends.base import Backend, PreviewRequest
from embed_studio.backends.samplers import check_preview_sampler
from embed_studio.errors import UserInputError

if TYPE_CHECKING:
    from PIL import Image

MAX_PROMPTS = 16
MAX_SIDE = 2048
# The WebUI's "Prompts from file or textbox" script's option names, and its shorter spellings.
_OPTIONS = {
    "prompt": "prompt", "negative_prompt": "negative_prompt", "negative": "negative_prompt", "seed": "seed",
    "sampler_name": "sampler", "sampler": "sampler", "scheduler": "scheduler", "steps": "steps",
    "cfg_scale": "cfg_scale", "cfg": "cfg_scale", "width": "width", "height": "height",
}  # fmt: skip
_INTS = {"seed", "steps", "width", "height"}
_STEP = re.compile(r"-(\d+)$")


def parse_preview_prompts(text: str, base: PreviewRequest) -> list[PreviewRequest]:
    """One PreviewRequest per non-empty line; a line is a prompt, or WebUI-style options that override `base`:

    a photo of mychar, smiling
    --prompt "mychar at the beach" --seed 5 --sampler_name "DPM++ 2M" --steps 25 --cfg_scale 6 --width 512 --height 768
    """
    requests = []
    for number, line in enumerate((x.strip() for x in (text or "").splitlines()), 1):
        if not line:
            continue
        if not line.startswith("--"):
            requests.append(dataclasses.replace(base, prompt=line))
            continue
        requests.append(_options_line(line, number, base))
    if len(requests) > MAX_PROMPTS:
        raise UserInputError(f"{len(requests)} preview prompts: at most {MAX_PROMPTS}, one per line.")
    return requests


def _options_line(line: str, number: int, base: PreviewRequest) -> PreviewRequest:
    where = f"Preview prompt line {number}"
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise UserInputError(f"{where}: {e} (close the quotes).") from None
    values: dict[str, object] = {}
    i = 0
    while i < len(words):
        key = words[i][2:] if words[i].startswith("--") else None
        if key not in _OPTIONS or i + 1 >= len(words):
            raise UserInputError(
                f"{where}: {words[i]!r} is not an option with a value. Use --prompt, --negative_prompt, --seed, "
                "--sampler_name, --scheduler, --steps, --cfg_scale, --width, --height (quote text with spaces)."
            )
        field, raw = _OPTIONS[key], words[i + 1]
        try:
            values[field] = int(raw) if field in _INTS else float(raw) if field == "cfg_scale" else raw
        except ValueError:
            raise UserInputError(f"{where}: --{key} {raw!r} is not a number.") from None
        i += 2
    request = dataclasses.replace(base, **values)
    check_preview_sampler(request.sampler, request.scheduler, f"{where}: sampler")
    if request.steps < 1 or request.cfg_scale < 0:
        raise UserInputError(f"{where}: steps must be at least 1 and the CFG scale 0 or more.")
    for side in (request.width, request.height):
        if side < 64 or side > MAX_SIDE or side % 8:
            raise UserInputError(f"{where}: width and height must be multiples of 8 from 64 to {MAX_SIDE}.")
    return request


def image_grid(
    rows: Sequence[Sequence[Image.Image]], row_labels: Sequence[str] = (), column_labels: Sequence[str] = ()
) -> Image.Image:
    """Images in a grid (each cell as big as the largest image, images centred), labels above and to the left."""
    from PIL import Image, ImageDraw

    cell_w = max(im.width for row in rows for im in row)
    cell_h = max(im.height for row in rows for im in row)
    pad = 4
    top = 18 if any(column_labels) else 0
    left = min(160, 8 + 7 * max((len(x) for x in row_labels), default=0)) if any(row_labels) else 0
    columns = max(len(row) for row in rows)
    grid = Image.new("RGB", (left + columns * (cell_w + pad), top + len(rows) * (cell_h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(column_labels):
        draw.text((left + c * (cell_w + pad) + 2, 3), _fit(label, cell_w), fill="black")
    for r, row in enumerate(rows):
        y = top + r * (cell_h + pad)
        if r < len(row_labels):
            draw.text((3, y + cell_h // 2 - 6), _fit(row_labels[r], left), fill="black")
        for c, image in enumerate(row):
            x = left + c * (cell_w + pad)
            grid.paste(image.convert("RGB"), (x + (cell_w - image.width) // 2, y + (cell_h - image.height) // 2))
    return grid


def _fit(text: str, width: int) -> str:
    most = max(4, width // 7)  # about 7 pixels a character in PIL's default font
    # ASCII only: the WebUI's Pillow draws its default bitmap font in Latin-1.
    text = text.encode("latin-1", "replace").decode("latin-1")
    return text if len(text) <= most else text[: most - 3] + "..."


def file_kind(path: Path) -> str:
    """'embedding' or 'hypernetwork' for a trained file (FileFormatError for anything else)."""
    from embed_studio.errors import FileFormatError
    from embed_studio.formats.detect import describe_file

    kind = describe_file(path).get("kind")
    if kind not in ("embedding", "hypernetwork"):
        raise FileFormatError(f"{path}: a {kind}, not an embedding or hypernetwork.")
    return str(kind)


def step_order(paths: Sequence[Path]) -> list[Path]:
    """Saved-step copies (NAME-250.pt, NAME-500.pt, NAME.pt) by step, the file without a step last."""

    def key(path: Path) -> tuple[int, str]:
        match = _STEP.search(path.stem)
        return (int(match.group(1)) if match else 1 << 62, path.name)

    return sorted(paths, key=key)


def prompt_word(path: Path) -> str:
    """The word prompts use for a saved-step copy: its file name without the -STEP ('mychar-250' -> 'mychar')."""
    return _STEP.sub("", path.stem) or path.stem


def render_step_grid(
    backend: Backend, files: Sequence[Path], requests: Sequence[PreviewRequest], word: str | None = None
) -> tuple[Image.Image, list[list[Image.Image]]]:
    """Every file (a row, by step) × every request (a column), rendered with the same seeds; (grid, images)."""
    from embed_studio.train.targets import load_target

    rows, labels = [], []
    for path in step_order(files):
        kind = file_kind(path)
        target = load_target(kind, path, backend, word or prompt_word(path))
        try:
            rows.append([target.preview(r) for r in requests])
        finally:
            close = getattr(target, "close", None)
            if close is not None:
                close()
        step = getattr(target, "initial_step", 0)
        labels.append(f"{path.stem} (step {step})")
    columns = [f"{r.prompt} (seed {r.seed})" for r in requests]
    return image_grid(rows, labels, columns), rows
