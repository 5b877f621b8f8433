"""`embed-studio inspect FILE...`: say what embedding, hypernetwork or optimizer file each one is."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show what an embedding / hypernetwork / .optim file holds",
        description="Print per file what it is: an embedding's name, vectors, dims, step and checkpoint; a "
        "hypernetwork's sizes, layer structure, activation, layer norm, dropout, step and checkpoint; and for "
        ".pt files whether the WebUI's safe loader accepts them. Exit code 1 if any file cannot be read.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".pt, .bin, .safetensors, .png/.webp or .optim")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    learned = p.add_argument_group("what an embedding learned")
    learned.add_argument(
        "--analytics", action="store_true", help="embeddings: each vector's norm and the init text's token count"
    )
    learned.add_argument(
        "--model", help="with --analytics: the model it was trained on, for the nearest vocabulary tokens per vector"
    )
    learned.add_argument("--nearest", type=int, default=5, help="with --model: tokens listed per vector (default 5)")
    learned.add_argument(
        "--history", type=Path, metavar="DIR", help="with --analytics: a folder of saved-step copies, for the norms "
        "over training (a run's LOGDIR/embeddings)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed_studio.errors import EmbedStudioError
    from embed_studio.fileio import os_error_message
    from embed_studio.formats.detect import describe_file

    results: list[dict[str, Any]] = []
    failed = False
    backend = _analytics_backend(args)
    for path in args.files:
        try:
            results.append(describe_file(path))
            if getattr(args, "analytics", False) and results[-1].get("kind") == "embedding":
                from embed_studio.train.analytics import embedding_analytics

                results[-1]["analytics"] = embedding_analytics(path, backend, args.history, args.nearest)
        except Exception as e:
            # One bad file (unreadable, crafted, a format bug) is named and the others are still inspected.
            if isinstance(e, EmbedStudioError):
                message = str(e)
            elif isinstance(e, OSError):
                message = os_error_message(e)
            else:
                message = f"{path}: cannot be read ({type(e).__name__}: {str(e)[:200]})."
            failed = True
            results.append({"file": str(path), "error": message})
            if not args.json:
                print(f"error: {message}", file=sys.stderr)
            continue
        if not args.json:
            print(format_summary(results[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _analytics_backend(args: argparse.Namespace) -> Any:
    from embed_studio.errors import UserInputError

    if not getattr(args, "analytics", False):
        if getattr(args, "model", None) or getattr(args, "history", None):
            raise UserInputError("--model and --history go with --analytics.")
        return None
    if args.nearest < 1:
        raise UserInputError(f"--nearest {args.nearest} must be at least 1.")
    if args.history is not None and not args.history.is_dir():
        raise UserInputError(f"--history {args.history} is not a folder (give a run's LOGDIR/embeddings).")
    if not args.model:
        return None
    from embed_studio.backends.standalone import StandaloneBackend

    return StandaloneBackend.load(args.model, "cpu")


def _analytics_lines(info: dict[str, Any]) -> list[str]:
    lines = [f"  vector norms: {', '.join(f'{n:g}' for n in info['norms'])}", f"  {info['init_text']}"]
    for i, tokens in enumerate(info.get("nearest_tokens") or []):
        lines.append(f"  vector {i} is nearest to: " + ", ".join(f"{t} ({s:.2f})" for t, s in tokens))
    history = info.get("norm_history")
    if history is not None:
        lines.append(f"  norms over {len(history)} saved step(s):")
        lines += [f"    step {h['step']}: {', '.join(f'{n:g}' for n in h['norms'])}" for h in history]
    return lines


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


def format_summary(info: dict[str, Any]) -> str:
    """Human-readable lines for one describe_file() summary."""
    lines = [f"{info['file']}: {info['kind']}"]
    kind = info["kind"]
    if kind in ("embedding", "hypernetwork"):
        lines.append(f"  name: {info['name']}")
        checkpoint = info.get("sd_checkpoint_name") or "-"
        if info.get("sd_checkpoint"):
            checkpoint += f" [{info['sd_checkpoint']}]"
    if kind == "embedding":
        dims = info["dims"]
        if info.get("parts"):
            dims = " + ".join(f"{width} ({key})" for key, width in info["parts"].items())
        step = info["step"] if info["step"] is not None else "-"
        lines.append(f"  model: {info.get('model', 'unknown')}  vectors: {info['vectors']}  dims: {dims}  step: {step}")
        if info.get("clip_skip") is not None:
            lines.append(f"  CLIP skip: {info['clip_skip']}")
        lines.append(f"  checkpoint: {checkpoint}")
        lines.append(f"  format: {info['format']}  checksum: {info['checksum']}  prompt word: {info['prompt_word']}")
        if "analytics" in info:
            lines += _analytics_lines(info["analytics"])
    elif kind == "hypernetwork":
        dropout = ", ".join(str(x) for x in info["dropout_structure"])
        lines.append(f"  sizes: {', '.join(str(s) for s in info['sizes'])}")
        lines.append(f"  layer structure: {', '.join(_num(x) for x in info['layer_structure'])}")
        lines.append(
            f"  activation: {info['activation_func']}  init: {info['weight_initialization']}  activate output: {_yes_no(info['activate_output'])}"
        )
        lines.append(
            f"  layer norm: {_yes_no(info['is_layer_norm'])}  dropout: {_yes_no(info['use_dropout'])} ({dropout})"
        )
        lines.append(f"  step: {info['step']}  checkpoint: {checkpoint}")
        if info.get("optional_info"):
            lines.append(f"  info: {info['optional_info']}")
    elif kind == "optimizer state":
        lines.append(f"  hash: {info['hash']}  optimizer: {info.get('optimizer_name') or 'AdamW'}  lr: {info['lr']}")
    if "optimizer_state" in info:
        lines.append(f"  optimizer state (.optim): {info['optimizer_state']}")
    if "webui_safe_load" in info:
        verdict = (
            "accepted"
            if info["webui_safe_load"]
            else f"REJECTED ({info['webui_safe_load_problem']}); re-save it or use --disable-safe-unpickle"
        )
        lines.append(f"  WebUI safe loader: {verdict}")
    return "\n".join(lines)


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)
