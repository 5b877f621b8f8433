"""What an embedding learned: vector norms (and how they grew over saved steps), nearest vocabulary tokens, init text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch


def vector_norms(vectors: torch.Tensor) -> list[float]:
    return [round(float(x), 4) for x in vectors.float().norm(dim=-1)]


def norm_history(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Per saved-step copy (in step order): its step and each vector's norm. Files that are no embedding are skipped."""
    from embed_studio.errors import EmbedStudioError
    from embed_studio.formats.embedding import load_embedding
    from embed_studio.train.preview_grid import step_order

    history = []
    for path in step_order(files):
        try:
            emb = load_embedding(path)
        except EmbedStudioError:
            continue
        history.append({"file": path.name, "step": emb.step, "norms": vector_norms(emb.vectors)})
    return history


def nearest_tokens(
    vectors: torch.Tensor, table: torch.Tensor, decode: Callable[[int], str], k: int = 5
) -> list[list[tuple[str, float]]]:
    """For each vector, the k vocabulary tokens whose embeddings point most the same way (cosine similarity)."""
    if vectors.shape[-1] != table.shape[-1]:
        from embed_studio.errors import FileFormatError

        raise FileFormatError(
            f"The embedding's vectors are {vectors.shape[-1]} wide but the model's tokens {table.shape[-1]}: "
            "give the model it was trained on."
        )
    v = torch.nn.functional.normalize(vectors.float().cpu(), dim=-1)
    t = torch.nn.functional.normalize(table.detach().float().cpu(), dim=-1)
    scores, ids = (v @ t.T).topk(min(k, t.shape[0]), dim=-1)
    return [
        [(decode(int(i)), round(float(s), 4)) for s, i in zip(row_s, row_i, strict=True)]
        for row_s, row_i in zip(scores, ids, strict=True)
    ]


def init_text_report(
    init_text: str | None,
    n_vectors: int,
    token_count: Callable[[str], int] | None,
    no_model: str = "give --model to count its tokens",
) -> str:
    """The init text's token count against the vectors, in one line (the WebUI silently drops surplus tokens)."""
    if init_text is None:
        return "init text: not recorded (made elsewhere)"
    if token_count is None:
        return f"init text: {init_text!r} ({no_model})"
    count = token_count(init_text)
    if count > n_vectors:
        verdict = f"more tokens than vectors: the WebUI dropped {count - n_vectors}"
    elif count < n_vectors:
        verdict = f"{n_vectors - count} vector(s) started as zeros/repeats"
    else:
        verdict = "one token per vector"
    return f"init text: {init_text!r} is {count} token(s) for {n_vectors} vector(s): {verdict}"


def embedding_analytics(
    path: Path,
    backend: Any | None = None,
    history_dir: Path | None = None,
    k: int = 5,
    no_model: str = "give --model to count its tokens",
) -> dict[str, Any]:
    """The analytics of one embedding file: norms, the init text check, nearest tokens (with a model) and history."""
    from embed_studio.formats.embedding import load_embedding

    emb = load_embedding(path)
    init_text = ((emb.extra or {}).get("embed_studio") or {}).get("init_text")
    info: dict[str, Any] = {"norms": vector_norms(emb.vectors)}
    count = None
    if backend is not None:
        tokenizer = backend.tokenizer

        def decode(i: int) -> str:
            return tokenizer.convert_ids_to_tokens(i).replace("</w>", "")

        def count(text: str) -> int:
            return len(backend.token_ids(text))

        table = backend.text_encoder.get_input_embeddings().weight
        info["nearest_tokens"] = nearest_tokens(emb.vectors, table, decode, k)
    info["init_text"] = init_text_report(
        init_text if isinstance(init_text, str) else None, emb.n_vectors, count, no_model
    )
    if history_dir is not None:
        files = [p for p in Path(history_dir).iterdir() if p.suffix.lower() in (".pt", ".safetensors")]
        info["norm_history"] = norm_history(files)
    return info


def render_norm_plot(
    history: Sequence[dict[str, Any]], *, title: str = "", transparent: bool = False, dpi: int = 100
) -> Any:
    """Each vector's norm over the saved steps (norm_history's rows) as a PIL image, or None with no rows.

    `transparent` as the loss plot's: no background and grey text, legible on the light and the dark theme."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from embed_studio.train.lossplot import finish_figure

    if not history:
        return None
    steps = [row["step"] for row in history]
    n_vectors = max(len(row["norms"]) for row in history)
    fig = Figure(figsize=(7.0, 3.0), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i in range(n_vectors):
        points = [(s, row["norms"][i]) for s, row in zip(steps, history, strict=True) if i < len(row["norms"])]
        ax.plot([s for s, _ in points], [n for _, n in points], marker="o", markersize=3, label=f"vector {i + 1}")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("norm")
    ax.grid(True, alpha=0.3)
    legend = ax.legend(loc="upper left", fontsize="small", ncol=min(n_vectors, 4))
    last = f"vector norms at step {steps[-1]}: " + ", ".join(f"{n:.3g}" for n in history[-1]["norms"])
    return finish_figure(fig, canvas, legend, f"{title} · {last}" if title else last, transparent)
