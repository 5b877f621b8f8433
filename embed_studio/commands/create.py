"""`embed-studio create embedding|hypernetwork`: make a new file to train, like the WebUI's Create tabs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("create", help="create a new embedding or hypernetwork file to train")
    sub = parser.add_subparsers(dest="create_kind", metavar="KIND", required=True)

    emb = sub.add_parser("embedding", help="a textual-inversion embedding initialised from a text")
    emb.add_argument("name", help="the embedding's name (the word you will prompt with)")
    emb.add_argument("--model", required=True, help="diffusers folder or .safetensors checkpoint (for its tokenizer)")
    emb.add_argument("--init-text", default="*", help="initialisation text (default '*'); must fit in --vectors tokens")
    emb.add_argument("--vectors", type=int, default=1, help="vectors per token (default 1)")
    emb.add_argument("--dir", default="embeddings", help="folder to write NAME.pt into (default ./embeddings)")
    emb.add_argument("--dataset", help="dataset folder: warn when NAME is already a tag in its captions")
    emb.add_argument("--clip-skip", type=int, help="record the CLIP skip you will train with")
    emb.add_argument("--overwrite", action="store_true", help="replace an existing file of that name")
    emb.set_defaults(func=_create_embedding)

    hn = sub.add_parser("hypernetwork", help="a hypernetwork with the WebUI's module options")
    hn.add_argument("name")
    hn.add_argument("--model", help="model whose attention widths give the default sizes")
    hn.add_argument("--sizes", help="comma-separated context widths (default: the model's, else 768,320,640,1280)")
    hn.add_argument(
        "--layer-structure", default="1, 2, 1", help="size multipliers, start and end with 1 (default 1,2,1)"
    )
    hn.add_argument("--activation", default="linear", help="linear, relu, leakyrelu, elu, swish, tanh, sigmoid, ...")
    hn.add_argument(
        "--weight-init", default="Normal", help="Normal, XavierUniform, XavierNormal, KaimingUniform or KaimingNormal"
    )
    hn.add_argument("--layer-norm", action="store_true", help="add LayerNorm after each layer")
    hn.add_argument("--dropout", action="store_true", help="use dropout")
    hn.add_argument("--dropout-structure", help="per-layer dropout, e.g. '0, 0.3, 0' (needs --dropout)")
    hn.add_argument(
        "--last-layer-dropout", action="store_true", help="default dropout structure also on the last layer"
    )
    hn.add_argument("--activate-output", action="store_true", help="apply the activation after the last layer too")
    hn.add_argument("--seed", type=int, help="seed for the initial weights")
    hn.add_argument("--dir", default="hypernetworks", help="folder to write NAME.pt into (default ./hypernetworks)")
    hn.add_argument("--overwrite", action="store_true", help="replace an existing file of that name")
    hn.set_defaults(func=_create_hypernetwork)


def _output(folder: str, name: str, overwrite: bool, family: str = "") -> Path:
    from embed_studio.errors import UserInputError
    from embed_studio.fileio import ensure_writable_dir
    from embed_studio.train.create import default_target

    path = default_target(folder, name, family)
    if path.exists() and not overwrite:
        raise UserInputError(f"{path} already exists. Pick another name, or pass --overwrite to replace it.")
    # Checked before the model loads, so a wrong --dir fails in a second, not after the load.
    ensure_writable_dir(path.parent, "output folder (--dir)")
    return path


def _create_embedding(args: argparse.Namespace) -> int:
    from embed_studio.backends.standalone import StandaloneBackend
    from embed_studio.formats.embedding import save_embedding
    from embed_studio.train.create import create_embedding, name_clashes
    from embed_studio.train.prompts import image_caption

    backend = StandaloneBackend.load(args.model, "cpu")
    path = _output(args.dir, args.name, args.overwrite, backend.family)  # SDXL: NAME.safetensors
    data = create_embedding(backend, args.name, args.init_text, args.vectors, clip_skip=args.clip_skip)
    if args.dataset:
        from embed_studio.dataset.folder import list_images

        clashes = name_clashes(data.name, [image_caption(p) for p in list_images(args.dataset)])
        if clashes:
            print(
                f"warning: {data.name!r} is already a tag in {clashes} caption(s) of {args.dataset}; prompts "
                "cannot tell the embedding from that tag. Consider another name.",
                file=sys.stderr,
            )
    save_embedding(data, path)
    print(f"created {path} ({data.n_vectors} vectors x {data.dim})")
    return 0


def _create_hypernetwork(args: argparse.Namespace) -> int:
    from embed_studio.errors import UserInputError
    from embed_studio.formats.hypernetwork import save_hypernetwork
    from embed_studio.train.create import create_hypernetwork

    path = _output(args.dir, args.name, args.overwrite)
    backend = None
    if args.model:
        from embed_studio.backends.standalone import StandaloneBackend

        backend = StandaloneBackend.load(args.model, "cpu")
    if args.sizes:
        try:
            sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        except ValueError:
            raise UserInputError(f"--sizes {args.sizes!r} must be whole numbers like 768,320,640,1280.") from None
    elif backend is not None:
        sizes = list(backend.context_sizes)
    else:
        sizes = [768, 320, 640, 1280]
    data = create_hypernetwork(
        args.name,
        sizes,
        layer_structure=args.layer_structure,
        activation_func=args.activation,
        weight_init=args.weight_init,
        add_layer_norm=args.layer_norm,
        use_dropout=args.dropout,
        dropout_structure=args.dropout_structure,
        last_layer_dropout=args.last_layer_dropout,
        activate_output=args.activate_output,
        seed=args.seed,
        backend=backend,
    )
    save_hypernetwork(data, path)
    print(f"created {path} (sizes {', '.join(map(str, sorted(data.layers)))})")
    return 0
