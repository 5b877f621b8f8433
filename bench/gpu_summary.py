"""The tables of bench/gpu.sh's runs and, from its memory rows, the largest batch that fits a 6, 8 and 12 GB card.

    python bench/gpu_summary.py OUT_FOLDER > OUT_FOLDER/summary.md

A card fits a batch when the allocator's peak (peak_reserved_gib) plus CONTEXT_GIB for the CUDA context and
libraries stays within the card's memory: an estimate from one H200 run, not a run on such a card.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import format_table  # noqa: E402

CARDS_GIB = (6, 8, 12)
CONTEXT_GIB = 0.5
RUNS = ("plain", "memory", "sync", "sdxl", "compile")


def largest_batches(rows: list[dict]) -> dict[int, int | None]:
    """Card size -> the largest measured trainer embedding batch that fits it (None: not even the smallest)."""
    measured = [
        r for r in rows
        if r["mode"].startswith("trainer") and r["kind"] == "embedding" and r["peak_reserved_gib"] is not None
    ]  # fmt: skip
    return {
        card: max((r["batch"] for r in measured if r["peak_reserved_gib"] + CONTEXT_GIB <= card), default=None)
        for card in CARDS_GIB
    }


def summary(folder: Path) -> str:
    parts = []
    for name in RUNS:
        path = folder / f"{name}.json"
        if not path.is_file():
            parts.append(f"## {name}\n\nno result (see {name}.log)\n")
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        parts.append(f"## {name}\n\n```\n{format_table(result)}\n```\n")
        if name == "memory":
            if all(r["peak_reserved_gib"] is None for r in result["rows"]):
                parts.append("no device allocator (a CPU run): no card sizes\n")
            else:
                fits = largest_batches(result["rows"])
                lines = [
                    f"- {card} GB: batch {batch if batch is not None else 'none measured'}"
                    for card, batch in fits.items()
                ]
                parts.append(
                    f"Largest measured batch (reserved peak + {CONTEXT_GIB} GiB context within the card):\n\n"
                    + "\n".join(lines)
                    + "\n"
                )
    return "\n".join(parts)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
