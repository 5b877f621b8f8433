"""`embed-studio sweep DATASET --vary SETTING=V1,V2 ...`: one training run per combination, then a table of losses."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import typing
from pathlib import Path

from embed_studio.commands.train import add_config_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="train one file per combination of a few settings, then compare their losses",
        description="Train a fresh embedding (or hypernetwork) for every combination of the --vary values, on the "
        "same data and seed, each in its own folder under --out named after its settings, one after another; then "
        "print a table of the final training loss (the mean of the last 10 steps) and validation loss of each, "
        "best first, also written to OUT/sweep.csv and OUT/sweep.json. A run that fails or is killed is reported "
        "and the others go on; Ctrl-C lets the current run save its state and stops the sweep. Every train option "
        "applies to all runs.",
    )  # fmt: skip
    parser.add_argument("dataset", help="folder of images with .txt captions")
    parser.add_argument(
        "--model", required=True,
        help="diffusers folder, or a .safetensors/.ckpt SD 1.x/2.x checkpoint with its .yaml beside it",
    )  # fmt: skip
    parser.add_argument(
        "--vary", action="append", default=[], metavar="SETTING=V1,V2",
        help="a setting and its values, e.g. learning_rate=0.005,0.002 or vectors=1,2 (repeat for more settings; "
        "separate values with | when they hold commas: lr='0.005:100, 0.001|0.002'). Any train option by its "
        "name (lr, max_steps/steps, grad_accum, min_snr_gamma...), and for embeddings vectors and init_text",
    )  # fmt: skip
    parser.add_argument("--kind", choices=["embedding", "hypernetwork"], default="embedding", help="what to train")
    parser.add_argument("--name", help="the name in prompts and of each file (default: the dataset folder's name)")
    parser.add_argument("--init-text", default="*", help="embeddings: the initialisation text (default '*')")
    parser.add_argument("--vectors", type=int, default=1, help="embeddings: vectors per token (default 1)")
    parser.add_argument("--out", help="folder of the runs and the table (default: textual_inversion/sweep-NAME)")
    add_config_options(parser, save_preset=False)
    parser.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from embed_studio.commands.train import _config_from_args
    from embed_studio.errors import UserInputError
    from embed_studio.train.create import clean_name, default_target
    from embed_studio.train.sweep import CREATE_SETTINGS, plan_sweep, run_config

    name = clean_name(args.name or Path(args.dataset).expanduser().resolve().name)
    out = Path(args.out or Path("textual_inversion") / f"sweep-{name}").expanduser()
    if args.log_dir:
        raise UserInputError("--log-dir: a sweep writes each run into its own folder under --out; give --out instead.")
    sweep = plan_sweep(args.vary, out)
    if args.kind == "hypernetwork" and set(sweep.varied) & set(CREATE_SETTINGS):
        raise UserInputError("vectors and init_text are embedding settings; a hypernetwork sweep cannot vary them.")
    if out.exists() and any(out.iterdir()):
        raise UserInputError(f"{out} is not empty: give a new --out folder (a sweep never trains over another's runs).")
    base = _config_from_args(argparse.Namespace(**{**vars(args), "name": name, "file": str(out / name), "dir": None}))
    for run in sweep.runs:  # every combination is checked before anything is created or trained
        run_config(base, run, default_target(run.folder, name))
        vectors = run.settings.get("vectors", args.vectors)
        if vectors < 1:
            raise UserInputError(f"vectors {vectors}: an embedding needs at least 1 vector per token.")
    targets = _create_files(args, base, sweep, name)
    stopped = _run_all(base, sweep, targets, name)
    return _report(sweep, out, stopped)


def _create_files(args: argparse.Namespace, base: typing.Any, sweep: typing.Any, name: str) -> list[Path]:
    """Each run's starting file, all made before any is written (a bad init text stops the sweep with nothing
    written); the model is loaded once, on the CPU, and let go before the runs load it."""
    import gc

    from embed_studio.backends.standalone import StandaloneBackend
    from embed_studio.formats.embedding import save_embedding
    from embed_studio.formats.hypernetwork import save_hypernetwork
    from embed_studio.train.create import create_embedding, create_hypernetwork, default_target
    from embed_studio.train.sweep import run_config

    backend = StandaloneBackend.load(base.model, "cpu")
    family = backend.family
    made = []
    for run in sweep.runs:
        if args.kind == "embedding":
            init_text = run.settings.get("init_text", args.init_text)
            vectors = run.settings.get("vectors", args.vectors)
            made.append(create_embedding(backend, name, init_text, vectors, clip_skip=base.clip_skip))
        else:  # the same seed: every run starts from the same weights
            made.append(create_hypernetwork(name, backend.context_sizes, seed=base.seed, backend=backend))
    del backend
    gc.collect()
    targets = []
    for run, data in zip(sweep.runs, made, strict=True):
        run.folder.mkdir(parents=True, exist_ok=True)
        target = default_target(run.folder, name, family)
        (save_embedding if args.kind == "embedding" else save_hypernetwork)(data, target)
        run_config(base, run, target).save_json(run.folder / "config.json")
        targets.append(target)
    return targets


def _run_all(base: typing.Any, sweep: typing.Any, targets: list[Path], name: str) -> bool:
    """Train each run in its own process (a crash or kill of one leaves the others); True when Ctrl-C stopped it."""
    import embed_studio

    env = dict(os.environ)
    root = str(Path(embed_studio.__file__).resolve().parents[1])  # the children run this same package
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    state: dict[str, typing.Any] = {"child": None, "stop": 0}

    def stop(signum: int, frame: typing.Any) -> None:
        if not state["stop"]:
            print("\ninterrupting: the current run saves its state, then the sweep stops", file=sys.stderr, flush=True)
            child = state["child"]
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGINT)
        state["stop"] = signum

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for run, target in zip(sweep.runs, targets, strict=True):
            if state["stop"]:
                break
            command = [
                sys.executable, "-m", "embed_studio", "train", base.kind, "--config", str(run.folder / "config.json"),
                "--dataset", base.dataset, "--name", name, "--file", str(target),
            ]  # fmt: skip
            # Its own session: a terminal's Ctrl-C reaches only the sweep, which passes one on to the run.
            child = subprocess.Popen(
                command, env=env, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, start_new_session=True
            )
            state["child"] = child
            settings = ", ".join(f"{k}={v}" for k, v in run.settings.items())
            print(f"run #{run.index}/{len(sweep.runs)}: {settings} (pid {child.pid})", file=sys.stderr, flush=True)
            last_error = ""
            for line in child.stderr:
                print(f"[#{run.index}] {line}", end="", file=sys.stderr, flush=True)
                if line.startswith("error:"):
                    last_error = line.removeprefix("error:").strip()
            code = child.wait()
            state["child"] = None
            _outcome(run, code, last_error, bool(state["stop"]))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return bool(state["stop"])


def _outcome(run: typing.Any, code: int, last_error: str, stopping: bool) -> None:
    from embed_studio.train.sweep import read_results

    read_results(run)
    if code == 0:
        run.status = "done"
    elif stopping and code in (128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT):
        run.status, run.message = "interrupted", "the sweep was interrupted; this run saved its state at its step"
    elif code < 0:
        try:
            by = signal.Signals(-code).name
        except ValueError:
            by = f"signal {-code}"
        run.status, run.message = "killed", f"ended by {by}"
    else:
        run.status, run.message = "failed", last_error or f"exit status {code}"


def _report(sweep: typing.Any, out: Path, stopped: bool) -> int:
    from embed_studio.train.sweep import table_text, write_results

    csv_path, json_path = write_results(sweep, out)
    print(table_text(sweep))
    print(f"table: {csv_path}, {json_path}", file=sys.stderr)
    if stopped:
        return 130
    return 0 if all(run.status == "done" for run in sweep.runs) else 1
