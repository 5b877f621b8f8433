"""`embed-studio preview`: render trained files (the final one or saved-step copies) × prompts as one grid."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preview",
        help="render images with embeddings/hypernetworks, as a grid of saved steps × prompts",
        description="Render every FILE (an embedding or hypernetwork; e.g. the saved-step copies in a run's log "
        "folder) with every prompt at the same seeds, and write one grid: a row per file, ordered by step, a "
        "column per prompt. The guides pick the best step this way by eye.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".pt/.safetensors files, or folders of them")
    p.add_argument("--model", required=True, help="diffusers folder or .safetensors checkpoint")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeat for more columns)")
    p.add_argument(
        "--prompts-file",
        type=Path,
        help="more prompts, one a line; a line may use the WebUI's --prompt/--seed/--sampler_name/--steps/"
        "--cfg_scale/--width/--height options",
    )
    p.add_argument("--word", help="the word prompts use for an embedding (default: the file name without -STEP)")
    p.add_argument("--negative", default="", help="negative prompt (default: none)")
    p.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    p.add_argument(
        "--sampler", default="euler_a",
        help="a diffusers scheduler by name: euler_a, dpmpp_2m_karras, unipc, heun... (a wrong one lists them all; "
        "default euler_a)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    p.add_argument("--cfg", type=float, default=7.0, help="CFG scale (default 7)")
    p.add_argument("--width", type=int, default=512, help="width in pixels, a multiple of 8 (default 512)")
    p.add_argument("--height", type=int, default=512, help="height in pixels, a multiple of 8 (default 512)")
    p.add_argument("--clip-skip", type=int, default=1, help="CLIP skip the files were trained with (default 1)")
    p.add_argument("--device", default=None, help="torch device (default: CUDA when available)")
    p.add_argument("--out", type=Path, default=Path("preview-grid.png"), help="grid PNG (default preview-grid.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed_studio.backends.base import PreviewRequest
    from embed_studio.backends.standalone import StandaloneBackend
    from embed_studio.errors import UserInputError
    from embed_studio.fileio import atomic_write_bytes
    from embed_studio.train.preview_grid import parse_preview_prompts, render_step_grid

    files = []
    for path in args.files:
        path = path.expanduser()
        if path.is_dir():
            files += [p for p in path.iterdir() if p.suffix.lower() in (".pt", ".safetensors")]
        elif path.is_file():
            files.append(path)
        else:
            raise UserInputError(f"{path} does not exist. Give embedding/hypernetwork files or a folder of them.")
    if not files:
        raise UserInputError("No .pt or .safetensors files to render.")
    base = PreviewRequest(
        prompt="", negative_prompt=args.negative, steps=args.steps, cfg_scale=args.cfg, seed=args.seed,
        width=args.width, height=args.height, sampler=args.sampler,
    )  # fmt: skip
    text = "\n".join(args.prompt)
    if args.prompts_file:
        try:
            text += "\n" + args.prompts_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserInputError(f"Cannot read {args.prompts_file}: {e}.") from None
    # A base line in options form checks the shared settings like any line's.
    import shlex

    shared = f"--prompt x --width {args.width} --height {args.height} --sampler {shlex.quote(args.sampler)}"
    parse_preview_prompts(shared, base)
    requests = parse_preview_prompts(text, base)
    if not requests:
        raise UserInputError("Give at least one --prompt (or a --prompts-file).")
    backend = StandaloneBackend.load(args.model, args.device)
    backend.configure("fp16" if backend.device.type == "cuda" else "fp32", True, args.clip_skip, False)
    grid, _ = render_step_grid(backend, files, requests, args.word)
    import io

    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    atomic_write_bytes(args.out.expanduser(), buf.getvalue())
    print(args.out)
    return 0
