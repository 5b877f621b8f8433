"""The one-line progress text shared by the CLI, the UI and the WebUI's progress bar."""

from __future__ import annotations

from embed_studio.jobs import JobStatus, format_eta


def status_line(status: JobStatus, unit: str = "it") -> str:
    """e.g. 'step 120/5000 · loss 0.1234 · batch 2 × 5 = 10 images a step · 3.21 it/s · ETA 25:20 · text'."""
    parts = []
    total = f"/{int(status.total)}" if status.total is not None else ""
    label = status.stats.get("label", "step")
    parts.append(f"{label} {int(status.done)}{total}")
    if "loss" in status.stats and status.stats["loss"] is not None:
        parts.append(f"loss {status.stats['loss']:.4f}")
    batch, accum = status.stats.get("batch_size"), status.stats.get("grad_accum")
    if batch and accum and accum > 1:  # gradient accumulation multiplies what a step sees: say it, with the sum
        parts.append(f"batch {batch} × {accum} = {batch * accum} images a step")
    elif batch:
        parts.append(f"batch {batch}")
    if status.rate:
        parts.append(f"{status.rate:.2f} {unit}/s")
    if status.state == "running" and status.total is not None:
        parts.append(f"ETA {format_eta(status.eta_seconds)}")
    if status.text:
        parts.append(status.text)
    if status.error:
        parts.append(status.error)
    return " · ".join(parts)
