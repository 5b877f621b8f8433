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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed_studio.errors import EmbedStudioError
    from embed_studio.formats.detect import describe_file

    results: list[dict[str, Any]] = []
    failed = False
    for path in args.files:
        try:
            results.append(describe_file(path))
        except EmbedStudioError as e:
            failed = True
            results.append({"file": str(path), "error": str(e)})
            if not args.json:
                print(f"error: {e}", file=sys.stderr)
            continue
        if not args.json:
            print(format_summary(results[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


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
