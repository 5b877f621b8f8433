"""The one-line progress text shared by the CLI, the UI and the WebUI's progress bar.

Every word of a job's progress line is chosen here; the CLI's terminal bar (commands/progress_display.py) only
lays these parts out to fit a width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embed_studio.jobs import RUNNING, JobStatus, format_eta

# Job stats a work function sets for setup work counted apart from its own units (latent caching before the
# steps): while `stage` is set the line counts the stage, and neither a rate nor an ETA of the units is shown.
STAGE, STAGE_DONE, STAGE_TOTAL = "stage", "stage_done", "stage_total"
# Job stats for previews being drawn between steps: "drawing preview 2/4".
DRAWING, DRAWING_TOTAL = "drawing", "drawing_total"

# What a job counts before its work names it (the first line of a run is drawn before any progress).
DEFAULT_LABELS = {"fetch": "file", "caption": "md5", "tag": "image", "train": "step"}
# How long a part survives when a narrow terminal must drop some: higher stays longer.
KEEP_COUNT, KEEP_ERROR, KEEP_DRAWING, KEEP_ETA, KEEP_BAR, KEEP_RATE, KEEP_LOSS, KEEP_BATCH, KEEP_TEXT = (
    100, 95, 90, 80, 75, 70, 60, 30, 10,
)  # fmt: skip


def stage_stats(label: str | None, done: int = 0, total: int | None = None) -> dict[str, Any]:
    """Stats for a setup stage such as ('caching latents', 3, 12); label None ends the stage."""
    return {STAGE: label, STAGE_DONE: done, STAGE_TOTAL: total}


def drawing_stats(number: int | None, total: int | None = None) -> dict[str, Any]:
    """Stats for preview `number` of `total` being drawn; None when the previews are done."""
    return {DRAWING: number, DRAWING_TOTAL: total}


@dataclass(frozen=True)
class Part:
    text: str
    keep: int  # KEEP_*: the order in which a narrow line drops parts (lowest first)


@dataclass(frozen=True)
class StatusParts:
    """A status split for layout: the count ('step 3/20'), how far along it is (None: unknown), then the rest."""

    count: str
    fraction: float | None
    rest: list[Part]

    def line(self) -> str:
        return " · ".join([self.count, *(p.text for p in self.rest)])


def _count(label: str, done: float, total: float | None) -> tuple[str, float | None]:
    if total is None:
        return f"{label} {int(done)}", None
    # Nothing to do is as good as done: a bar of 0/0 is full, not a division by zero.
    fraction = min(1.0, max(0.0, done / total)) if total > 0 else 1.0
    return f"{label} {int(done)}/{int(total)}", fraction


def status_parts(status: JobStatus, unit: str = "it") -> StatusParts:
    stats = status.stats
    stage = stats.get(STAGE)
    if stage:
        count, fraction = _count(stage, stats.get(STAGE_DONE) or 0, stats.get(STAGE_TOTAL))
    else:
        count, fraction = _count(stats.get("label", DEFAULT_LABELS.get(status.kind, "step")), status.done, status.total)
    rest: list[Part] = []
    if stats.get(DRAWING):
        total = stats.get(DRAWING_TOTAL)
        rest.append(Part(f"drawing preview {stats[DRAWING]}" + (f"/{total}" if total else ""), KEEP_DRAWING))
    if stats.get("loss") is not None and not stage:
        rest.append(Part(f"loss {stats['loss']:.4f}", KEEP_LOSS))
    batch, accum = stats.get("batch_size"), stats.get("grad_accum")
    if batch and accum and accum > 1:  # gradient accumulation multiplies what a step sees: say it, with the sum
        rest.append(Part(f"batch {batch} × {accum} = {batch * accum} images a step", KEEP_BATCH))
    elif batch:
        rest.append(Part(f"batch {batch}", KEEP_BATCH))
    if not stage:  # the rate and ETA are the units' own: a setup stage shows neither
        if status.rate:
            rest.append(Part(f"{status.rate:.2f} {unit}/s", KEEP_RATE))
        if status.state == RUNNING and status.total:
            rest.append(Part(f"ETA {format_eta(status.eta_seconds)}", KEEP_ETA))
    if status.text:
        rest.append(Part(status.text, KEEP_TEXT))
    if status.error:
        rest.append(Part(status.error, KEEP_ERROR))
    return StatusParts(count, fraction, rest)


def status_line(status: JobStatus, unit: str = "it") -> str:
    """e.g. 'step 120/5000 · loss 0.1234 · batch 2 × 5 = 10 images a step · 3.21 it/s · ETA 25:20 · text'."""
    return status_parts(status, unit).line()
