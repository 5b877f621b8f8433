"""The Train panel's "What the embedding learned": vector norms over saved steps, nearest tokens, the init text."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from embed_studio.backends.provider import BackendProvider, resolve_target
from embed_studio.errors import EmbedStudioError
from embed_studio.ui import train_form as form

NEAREST = 5  # vocabulary tokens shown per vector
NO_MODEL = "its token count and the nearest tokens show once a run has loaded the model"
# The WebUI lends its model only for a run: the vocabulary is read by the CLI instead.
NO_VOCABULARY = "for its token count and the nearest tokens: embed-studio inspect FILE --analytics --model MODEL"


class AnalyticsPanel:
    """An accordion under the loss plot; Refresh (and picking a file) reads the file and its run's saved copies."""

    def __init__(self, provider: BackendProvider):
        self.provider = provider

    def create_ui(self) -> None:
        with gr.Accordion("What the embedding learned", open=False, elem_id="es-train-analytics"):
            self.refresh = gr.Button("Refresh", size="sm", elem_id="es-train-analytics-refresh")
            self.norms = gr.Image(
                label="Vector norms over saved steps", type="pil", interactive=False, show_download_button=True,
                elem_id="es-train-analytics-norms",
            )  # fmt: skip
            self.text = gr.Markdown("", elem_id="es-train-analytics-text")

    def set_callbacks(self, *, kind: Any, target: Any, name: Any, log_dir: Any, after: Sequence[Any] = ()) -> None:
        """Shown on Refresh, when a file is picked, and after each event in `after` (a run's end)."""
        inputs = [kind, target, name, log_dir]
        self.refresh.click(self.show, inputs=inputs, outputs=[self.norms, self.text])
        target.change(self.show, inputs=inputs, outputs=[self.norms, self.text])
        for event in after:
            event.then(self.show, inputs=inputs, outputs=[self.norms, self.text])

    def show(self, kind: str, target: str, name: str = "", log_dir: str = "") -> tuple[Any, str]:
        """(norm plot or None, markdown) for the picked file; a problem is said in the markdown."""
        if kind != "embedding":
            return None, "Analytics are for embeddings (a hypernetwork's weights have no tokens to compare)."
        if not (target or "").strip():
            return None, ""
        try:
            path = resolve_target(kind, target, self.provider)
            if not path.is_file():
                return None, f"{html.escape(path.name, quote=False)} does not exist yet: create it, then train it."
            return self._analytics(path, name, log_dir)
        except EmbedStudioError as e:
            return None, html.escape(str(e), quote=False)

    def _analytics(self, path: Path, name: str, log_dir: str) -> tuple[Any, str]:
        from embed_studio.train.analytics import embedding_analytics, norm_history, render_norm_plot

        loaded = getattr(self.provider, "loaded_backend", None)
        backend = loaded() if loaded is not None else None
        if backend is not None and not hasattr(backend, "tokenizer"):
            backend = None  # a model without a vocabulary table to read
        info = embedding_analytics(path, backend, None, NEAREST, no_model=NO_MODEL if loaded else NO_VOCABULARY)
        copies = self._log_folder(path, name, log_dir) / "embeddings"
        files = [p for p in copies.iterdir() if p.suffix.lower() in (".pt", ".safetensors")] if copies.is_dir() else []
        history = norm_history([*files, path])
        image = render_norm_plot(history, title=path.stem, transparent=True)
        return image, _markdown(info, len(history))

    def _log_folder(self, path: Path, name: str, log_dir: str) -> Path:
        """The folder of the latest run that trained `path`, else the one the form would train into."""
        try:
            return form.saved_run("embedding", path, self.provider).log_path
        except EmbedStudioError:
            return (
                Path(log_dir.strip()) if log_dir.strip() else Path(self.provider.log_dir) / (name.strip() or path.stem)
            )


def _markdown(info: dict[str, Any], n_saved: int) -> str:
    lines = [html.escape(info["init_text"], quote=False), ""]
    nearest = info.get("nearest_tokens")
    lines.append("| vector | norm | nearest tokens (cosine) |")
    lines.append("|---|---|---|")
    for i, norm in enumerate(info["norms"]):
        tokens = ", ".join(f"{_cell(t)} {s:.2f}" for t, s in nearest[i]) if nearest else "—"
        lines.append(f"| {i + 1} | {norm:.4f} | {tokens} |")
    if n_saved < 2:
        lines += ["", "Norms over steps appear as the run saves copies (Save a copy every N steps)."]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """A vocabulary token as table text: a token may be '|' or '<', which would end the cell or start a tag."""
    return html.escape(text, quote=False).replace("|", "\\|") or "∅"
