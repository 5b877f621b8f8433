"""A sweep: the cartesian product of a few training settings on the same data and seed, and its results table."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embed_studio.errors import UserInputError
from embed_studio.fileio import atomic_write_text
from embed_studio.train.config import TrainConfig, check_type

MAX_RUNS = 64
# Settings of the file a run starts from (embeddings), beside TrainConfig's: each run creates its own file.
CREATE_SETTINGS: dict[str, type] = {"vectors": int, "init_text": str}
# Spellings a user reaches for first; the rest are TrainConfig's field names (dashes or underscores).
ALIASES = {
    "learning_rate": "lr",
    "steps": "max_steps",
    "gradient_accumulation": "grad_accum",
    "vectors_per_token": "vectors",
}
# What a run does not vary: where it reads and writes, and what it trains.
FIXED = {"kind", "model", "dataset", "target", "name", "log_dir", "extra", "device"}
LAST_LOSSES = 10  # the final training loss is the mean of this many last steps (one step's loss is noise)
_BOOLS = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass
class SweepRun:
    """One combination: its settings, folder, and once run, what it reached."""

    index: int
    settings: dict[str, Any]
    folder: Path
    status: str = "not run"  # done, failed, killed, interrupted, not run
    message: str = ""
    step: int | None = None
    final_loss: float | None = None
    validation_loss: float | None = None
    best_validation_loss: float | None = None
    best_validation_step: int | None = None

    def row(self) -> dict[str, Any]:
        return {
            "run": self.folder.name,
            **{key: self.settings[key] for key in self.settings},
            "status": self.status,
            "step": self.step,
            "final_loss": self.final_loss,
            "validation_loss": self.validation_loss,
            "best_validation_loss": self.best_validation_loss,
            "best_validation_step": self.best_validation_step,
            "message": self.message,
        }


@dataclass
class Sweep:
    varied: dict[str, list[Any]]
    runs: list[SweepRun] = field(default_factory=list)


def setting_name(key: str) -> str:
    """A --vary key as a setting name: dashes as underscores, the aliases resolved; UserInputError if unknown."""
    name = key.strip().lower().replace("-", "_")
    name = ALIASES.get(name, name)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if name in CREATE_SETTINGS or (name in fields and name not in FIXED):
        return name
    allowed = sorted((fields - FIXED) | set(CREATE_SETTINGS) | set(ALIASES))
    raise UserInputError(f"--vary {key!r}: not a setting a sweep can vary; use one of: {', '.join(allowed)}.")


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """'lr=0.005,0.002' -> ('lr', ['0.005', '0.002']) typed per the setting; '|' separates values holding commas
    ('lr=0.005:100, 0.001|0.002')."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip():
        raise UserInputError(f"--vary {text!r}: write SETTING=VALUE,VALUE (e.g. learning_rate=0.005,0.002).")
    name = setting_name(key)
    parts = [v.strip() for v in values.split("|" if "|" in values else ",")]
    if not all(parts):
        raise UserInputError(f"--vary {text!r}: an empty value; separate values with commas (or | around commas).")
    if len(set(parts)) != len(parts):
        raise UserInputError(f"--vary {text!r}: a value appears twice.")
    return name, [_typed(name, v, text) for v in parts]


def _typed(name: str, raw: str, where: str) -> Any:
    hint = CREATE_SETTINGS.get(name) or typing.get_type_hints(TrainConfig)[name]
    if hint is bool:
        if raw.lower() not in _BOOLS:
            raise UserInputError(f"--vary {where!r}: {raw!r} is not on/off (true/false).")
        return _BOOLS[raw.lower()]
    if hint in (int, float):
        try:
            value = float(raw) if hint is float else int(raw)
        except ValueError:
            kind = "a whole number" if hint is int else "a number"
            raise UserInputError(f"--vary {where!r}: {raw!r} is not {kind}.") from None
        return check_type(name, value, hint, "--vary setting")
    return raw


def plan_sweep(varies: list[str], out: Path) -> Sweep:
    """The runs of `varies` (each 'SETTING=V1,V2'), in product order, each with a folder under `out` named after its
    settings; UserInputError for a setting given twice, nothing to vary, or too many runs."""
    varied: dict[str, list[Any]] = {}
    for text in varies:
        name, values = parse_vary(text)
        if name in varied:
            raise UserInputError(f"--vary {name} is given twice; list all its values in one --vary.")
        varied[name] = values
    if not varied:
        raise UserInputError("Nothing to sweep: give at least one --vary SETTING=VALUE,VALUE.")
    combos = list(itertools.product(*varied.values()))
    if len(combos) > MAX_RUNS:
        raise UserInputError(f"{len(combos)} combinations: at most {MAX_RUNS}; vary fewer settings or values.")
    sweep = Sweep(varied)
    width = len(str(len(combos)))
    for index, combo in enumerate(combos, 1):
        settings = dict(zip(varied, combo, strict=True))
        label = "_".join(f"{k}={_shown(v)}" for k, v in settings.items())
        folder = out / f"{index:0{width}d}-{_UNSAFE.sub('-', label)[:100]}"
        sweep.runs.append(SweepRun(index, settings, folder))
    return sweep


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_config(base: TrainConfig, run: SweepRun, target: Path) -> TrainConfig:
    """`base` with the run's training settings, its file and its folder; validated."""
    values = base.to_dict()
    values.update({k: v for k, v in run.settings.items() if k not in CREATE_SETTINGS})
    values.update(target=str(target), log_dir=str(run.folder))
    return TrainConfig.from_dict(values).validate()


def read_results(run: SweepRun) -> None:
    """The run's step, final training loss and validation losses from its log folder."""
    from embed_studio.train.lossplot import loss_log_path, read_loss_log, read_validation_log

    series = read_loss_log(loss_log_path(run.folder))
    if len(series):
        run.step = series.steps[-1]
        last = series.losses[-LAST_LOSSES:]
        run.final_loss = sum(last) / len(last)
    checks = read_validation_log(run.folder / "validation.csv")
    if len(checks):
        run.validation_loss = checks.losses[-1]
        run.best_validation_step, run.best_validation_loss = checks.best()


def ranked(runs: list[SweepRun]) -> list[SweepRun]:
    """Finished runs first, by validation loss where the runs have one, then by final training loss."""

    def key(run: SweepRun) -> tuple:
        missing = math.inf
        done = run.status == "done"
        return (
            not done,
            run.validation_loss if run.validation_loss is not None else missing,
            run.final_loss if run.final_loss is not None else missing,
            run.index,
        )

    return sorted(runs, key=key)


def table_text(sweep: Sweep) -> str:
    """The ranked runs as an aligned text table."""
    header = ["#", *sweep.varied, "status", "step", "final loss", "val loss", "best val (step)"]
    rows = [header]
    for run in ranked(sweep.runs):
        best = (
            "" if run.best_validation_loss is None else f"{run.best_validation_loss:.5f} ({run.best_validation_step})"
        )
        rows.append(
            [
                str(run.index),
                *(_shown(run.settings[k]) for k in sweep.varied),
                run.status,
                "" if run.step is None else str(run.step),
                "" if run.final_loss is None else f"{run.final_loss:.5f}",
                "" if run.validation_loss is None else f"{run.validation_loss:.5f}",
                best,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    notes = [f"#{run.index} {run.status}: {run.message}" for run in sweep.runs if run.message]
    return "\n".join(lines + notes)


def write_results(sweep: Sweep, out: Path) -> tuple[Path, Path]:
    """sweep.csv and sweep.json in `out`, ranked; returns their paths."""
    import csv
    import io

    rows = [run.row() for run in ranked(sweep.runs)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path = out / "sweep.csv", out / "sweep.json"
    atomic_write_text(csv_path, buf.getvalue())
    data = {"varied": sweep.varied, "runs": rows}
    atomic_write_text(json_path, json.dumps(data, indent=2, default=str) + "\n")
    return csv_path, json_path
