"""Preview scoring: the Tagger panel's model tags each preview; per saved step, how many character tags it shows.

The character tags are the user's list or the Dataset panel's suggestions (tags on most captions, generic ones left
out). The log, preview_scores.jsonl beside loss.csv, holds one JSON object per scored step:
{"step": 250, "score": 2.5, "of": 4, "tags": [...], "previews": [{"image": "name-250.png", "count": 3, "shown": [...]}]}
where score is the mean count over that step's previews (the usual one and each extra preview prompt).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embed_studio.errors import EmbedStudioError
from embed_studio.fileio import atomic_write_text
from embed_studio.tagspell import tag_key

SCORE_LOG_NAME = "preview_scores.jsonl"


def character_tags(config: Any) -> list[str]:
    """The tags a preview is scored on: config.score_tags, else the dataset's suggested character tags."""
    from embed_studio.dataset.captions import DatasetCaptions, parse_tag_list

    listed = parse_tag_list(config.score_tags)
    if listed:
        return listed
    suggestions = DatasetCaptions.load(config.dataset).suggest_character_tags(config.score_share)
    return [row.tag for row in suggestions.candidates]


def count_shown(tags: Sequence[str], shown: Sequence[str]) -> list[str]:
    """The character tags among a tagger's tags, in any spelling ('black_hair' is 'black hair')."""
    keys = {tag_key(t) for t in shown}
    return [t for t in tags if tag_key(t) in keys]


class ScoreLog:
    """preview_scores.jsonl, rewritten atomically at every scored step (a few per run)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = read_score_rows(path)

    def truncate_after(self, step: int) -> None:
        """A resumed run drops rows past the file's step (a run killed after scoring, before saving)."""
        kept = [r for r in self.rows if r["step"] <= step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self.flush()

    def add(self, row: dict[str, Any]) -> None:
        self.rows = [r for r in self.rows if r["step"] != row["step"]] + [row]
        self.flush()

    def flush(self) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, text)


def read_score_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The well-formed rows of a score log (a missing file or bad lines give fewer rows, never an error)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    for line in lines:
        try:
            row = json.loads(line)
            step, score, of = row["step"], row["score"], row["of"]
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(step, int) and isinstance(score, (int, float)) and math.isfinite(score) and isinstance(of, int):
            rows.append(row)
    return rows


@dataclass
class ScoreSeries:
    """Score per scored step, sorted by step (for the plot)."""

    steps: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    of: int = 0  # the number of character tags (of the latest row)

    def __len__(self) -> int:
        return len(self.steps)

    def best(self) -> tuple[int, float] | None:
        """(step, score) of the highest score; on a tie the earliest step (less training, less overfit)."""
        if not self.steps:
            return None
        i = max(range(len(self.scores)), key=lambda k: (self.scores[k], -self.steps[k]))
        return self.steps[i], self.scores[i]


def read_score_log(path: str | os.PathLike) -> ScoreSeries:
    rows = {r["step"]: r for r in read_score_rows(path)}
    steps = sorted(rows)
    return ScoreSeries(steps, [float(rows[s]["score"]) for s in steps], rows[steps[-1]]["of"] if steps else 0)


class PreviewScorer:
    """Tags previews with a loaded tagger and logs each step's score."""

    def __init__(self, tagger: Any, tags: list[str], log: ScoreLog, options: Any = None):
        from embed_studio.tagger.options import TaggerOptions

        self.tagger, self.tags, self.log = tagger, tags, log
        self.options = options or TaggerOptions()  # the Tagger panel's defaults: thresholds, categories

    def score(self, step: int, images: Sequence[Path]) -> dict[str, Any]:
        from embed_studio.tagger.pipeline import tag_with

        previews = []
        for path in images:
            shown = count_shown(self.tags, tag_with(self.tagger, path, self.options).tags)
            previews.append({"image": Path(path).name, "count": len(shown), "shown": shown})
        score = sum(p["count"] for p in previews) / len(previews) if previews else 0.0
        row = {"step": step, "score": score, "of": len(self.tags), "tags": list(self.tags), "previews": previews}
        self.log.add(row)
        return row

    def describe(self, row: dict[str, Any]) -> str:
        best = read_score_log(self.log.path).best()
        text = f"step {row['step']}: the previews show {row['score']:g} of {row['of']} character tags"
        return text + (f" (best: {best[1]:g} at step {best[0]})" if best else "")


def make_scorer(config: Any, log_dir: Path, initial_step: int, warn: Callable[[str], None]) -> PreviewScorer | None:
    """The run's scorer, or None (off, or said in one line by `warn` why it cannot score: training goes on)."""
    path = log_dir / SCORE_LOG_NAME
    if path.is_file():
        ScoreLog(path).truncate_after(initial_step)
    if not config.preview_score:
        return None
    if not config.score_tagger.strip():
        warn(
            "Preview scoring is on but no tagger model is set: training runs without scoring. Pick the scoring "
            "tagger model (--score-tagger), e.g. the Tagger panel's."
        )
        return None
    if not config.preview_every and not config.save_each_cycle:
        warn("Preview scoring needs previews (Preview every N steps above 0): training runs without scoring.")
        return None
    try:
        tags = character_tags(config)
    except EmbedStudioError as e:
        warn(f"Preview scoring is off: {e}")
        return None
    if not tags:
        warn(
            f"Preview scoring is off: no tag besides generic ones is on {config.score_share:.0%} of the captions. "
            "List the character tags to look for, or lower the share."
        )
        return None
    try:
        from embed_studio.tagger.pipeline import load_tagger

        models_dir = Path(config.score_models_dir).expanduser() if config.score_models_dir else None
        # "auto" like the Tagger panel, so a model that panel loaded is the same session, not a second copy.
        tagger = load_tagger(config.score_tagger.strip(), models_dir, device="auto")
    except EmbedStudioError as e:
        warn(f"Preview scoring is off: {e}")
        return None
    except ImportError as e:
        warn(f"Preview scoring is off: the tagger needs onnxruntime ({e}); pip install onnxruntime.")
        return None
    return PreviewScorer(tagger, tags, ScoreLog(path))
