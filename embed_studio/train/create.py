"""Create a new embedding (from an initialization text) or hypernetwork (from its layer options)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from embed_studio.backends.base import SDXL_HYPERNETWORK_REFUSAL, Backend
from embed_studio.errors import UserInputError
from embed_studio.formats.hypernetwork import webui_dropout_structure
from embed_studio.train.hypernetwork_modules import (
    HypernetworkModule,
    modules_state,
    parse_layer_structure,
)

MAX_VECTORS = 75  # one CLIP window; the WebUI cannot place a longer embedding in a prompt


def clean_name(name: str) -> str:
    """The WebUI keeps letters, digits and '._- ' in names; anything else is dropped."""
    cleaned = "".join(ch for ch in name if ch.isalnum() or ch in "._- ").strip()
    if not cleaned:
        raise UserInputError(f"Name {name!r} has no usable characters; use letters, digits, '.', '_', '-' or spaces.")
    return cleaned


def name_clashes(name: str, captions: Iterable[str]) -> int:
    """How many captions already use `name` as a tag or word (then [name] would mean two things in prompts)."""
    pattern = re.compile(rf"(?<![\w]){re.escape(name.strip().lower())}(?![\w])")
    return sum(
        1
        for caption in captions
        if pattern.search(caption.lower().replace("_", " ")) or pattern.search(caption.lower())
    )


def init_vectors(backend: Backend, init_text: str, n_vectors: int) -> torch.Tensor:
    """[n_vectors, dim] from the init text's token embeddings (zeros for an empty text), as the WebUI lays them out.

    Refuses an init text with more tokens than vectors instead of silently dropping the rest.
    """
    if not 1 <= n_vectors <= MAX_VECTORS:
        raise UserInputError(f"Vectors per token must be between 1 and {MAX_VECTORS} (got {n_vectors}).")
    if not init_text.strip():
        return torch.zeros(n_vectors, backend.token_dim)
    tokens = backend.token_vectors(init_text)
    n_tokens = int(tokens.shape[0])
    if n_tokens > n_vectors:
        raise UserInputError(
            f"Initialization text {init_text!r} needs {n_tokens} tokens but the embedding has only {n_vectors} "
            f"vector(s). Use --vectors {n_tokens} (or more), or shorten the text to {n_vectors} token(s)."
        )
    if n_tokens == 0:
        return torch.zeros(n_vectors, backend.token_dim)
    # Spread the tokens over the vectors like the WebUI (2 tokens in 4 vectors: a, a, b, b).
    index = torch.tensor([i * n_tokens // n_vectors for i in range(n_vectors)])
    return tokens[index].clone().float()


def create_embedding(
    backend: Backend, name: str, init_text: str = "*", n_vectors: int = 1, *, clip_skip: int | None = None
) -> object:
    """A new EmbeddingData at step 0 (not written; save it with formats.save_embedding)."""
    from embed_studio.formats.embedding import EmbeddingData

    name = clean_name(name)
    vectors = init_vectors(backend, init_text, n_vectors)
    meta = {"init_text": init_text, "model_family": backend.family}
    if clip_skip is not None:
        meta["clip_skip"] = int(clip_skip)
    return EmbeddingData(
        name=name,
        vectors=vectors,
        step=0,
        sd_checkpoint=backend.checkpoint_hash,
        sd_checkpoint_name=backend.checkpoint_name,
        extra={"embed_studio": meta},
    )


def create_hypernetwork(
    name: str,
    sizes: Sequence[int],
    *,
    layer_structure: str | Sequence[float] = (1, 2, 1),
    activation_func: str = "linear",
    weight_init: str = "Normal",
    add_layer_norm: bool = False,
    use_dropout: bool = False,
    dropout_structure: str | Sequence[float] | None = None,
    last_layer_dropout: bool = False,
    activate_output: bool = False,
    seed: int | None = None,
    backend: Backend | None = None,
) -> object:
    """A new HypernetworkData with freshly initialised modules for each context size (the WebUI's semantics)."""
    from embed_studio.formats.hypernetwork import HypernetworkData

    if backend is not None and backend.family == "sdxl":
        raise UserInputError(SDXL_HYPERNETWORK_REFUSAL)
    name = clean_name(name)
    structure = parse_layer_structure(layer_structure)
    sizes = sorted({int(s) for s in sizes})
    if not sizes or any(s <= 0 for s in sizes):
        raise UserInputError(
            "Pick at least one hypernetwork size (the model's attention widths, e.g. 768, 320, 640, 1280)."
        )
    if use_dropout and dropout_structure:
        if isinstance(dropout_structure, str):
            try:
                dropout = [float(x) for x in dropout_structure.split(",") if x.strip()]
            except ValueError:
                raise UserInputError(
                    f"Dropout structure {dropout_structure!r} must be numbers like '0, 0.3, 0'."
                ) from None
        else:
            dropout = [float(x) for x in dropout_structure]
        if len(dropout) != len(structure) or dropout[0] != 0 or dropout[-1] != 0:
            raise UserInputError(
                f"Dropout structure {dropout} needs one value per layer ({len(structure)}), starting and ending with 0."
            )
    else:
        dropout = webui_dropout_structure(structure, use_dropout, last_layer_dropout)
    generator_state = None
    if seed is not None:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
    try:
        modules = {
            size: tuple(
                HypernetworkModule(
                    size, structure, activation_func, weight_init, add_layer_norm, activate_output, dropout
                )
                for _ in range(2)
            )
            for size in sizes
        }
    finally:
        if generator_state is not None:
            torch.random.set_rng_state(generator_state)
    extra = {"embed_studio": {"model_family": backend.family}} if backend is not None else {}
    return HypernetworkData(
        name=name,
        layers=modules_state(modules),
        layer_structure=structure,
        activation_func=activation_func,
        is_layer_norm=add_layer_norm,
        weight_initialization=weight_init,
        use_dropout=use_dropout,
        dropout_structure=dropout,
        activate_output=activate_output,
        last_layer_dropout=bool(dropout[-2] != 0),
        step=0,
        sd_checkpoint=backend.checkpoint_hash if backend else None,
        sd_checkpoint_name=backend.checkpoint_name if backend else None,
        extra=extra,
    )


def default_target(folder: str | Path, name: str, family: str | None = None) -> Path:
    """FOLDER/NAME.pt; for an SDXL embedding NAME.safetensors, the one form the WebUI reads with its step and
    checkpoint. With the family unknown, an existing NAME.safetensors is found where there is no NAME.pt."""
    base = Path(folder).expanduser() / clean_name(name)
    pt, safetensors = base.with_name(base.name + ".pt"), base.with_name(base.name + ".safetensors")
    if family == "sdxl" or (family is None and not pt.exists() and safetensors.exists()):
        return safetensors
    return pt
