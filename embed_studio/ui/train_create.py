"""The Train panel's "Create embedding" and "Create hypernetwork" forms: a new file in the host's folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from embed_studio.backends.provider import CHECKPOINT_VAE, BackendProvider, folder_for
from embed_studio.errors import EmbedStudioError, UserInputError
from embed_studio.formats.hypernetwork import activation_classes
from embed_studio.train.create import MAX_VECTORS, clean_name, default_target, name_clashes
from embed_studio.train.hypernetwork_modules import WEIGHT_INITS
from embed_studio.ui import train_form as form
from embed_studio.ui.host import UiHost

# The WebUI's "Modules" choices: SD 1.x uses 768 (text) and 320/640/1280 (UNet); SD 2.x has 1024 text context.
HYPERNETWORK_SIZES = ("768", "1024", "320", "640", "1280")
DEFAULT_HYPERNETWORK_SIZES = ["768", "320", "640", "1280"]
DEFAULT_VECTORS = 16  # the guide's main advice; its appendix finds 2-3 often enough


class CreatePanels:
    """Both create forms; after creating, the Train form is switched to the new file."""

    def __init__(self, host: UiHost):
        self.host = host

    @property
    def provider(self) -> BackendProvider:
        assert self.host.backend_provider is not None
        return self.host.backend_provider

    def embedding_ui(self) -> None:
        with gr.Row():
            self.emb_name = gr.Textbox(
                label="Name", elem_id="es-train-emb-name",
                info="The word you will prompt with. Not a word you use otherwise (e.g. '1girl'), nor a tag in "
                "the dataset's captions.",
            )  # fmt: skip
            self.emb_vectors = gr.Number(
                value=DEFAULT_VECTORS, precision=0, label="Vectors per token", elem_id="es-train-emb-vectors",
                info=f"The guide uses 16; its appendix found 2-3 often look as good and train faster. 1 to {MAX_VECTORS}.",
            )  # fmt: skip
        self.emb_init = gr.Textbox(
            label="Initialization text", value="*", elem_id="es-train-emb-init",
            info="A few key tags of how the character looks: a head start. Its tokens must fit in the vectors.",
        )  # fmt: skip
        with gr.Row():
            self.emb_overwrite = gr.Checkbox(
                value=False, label="Overwrite an existing file of that name", elem_id="es-train-emb-overwrite"
            )
            self.emb_button = gr.Button("Create embedding", elem_id="es-train-emb-create")
            self.emb_train_button = gr.Button("Create & train", variant="primary", elem_id="es-train-emb-create-train")
        self.emb_status = gr.Markdown("", elem_id="es-train-emb-status", elem_classes=["es-status-line"])

    def hypernetwork_ui(self) -> None:
        self.hn_name = gr.Textbox(label="Name", elem_id="es-train-hn-name")
        self.hn_sizes = gr.CheckboxGroup(
            list(HYPERNETWORK_SIZES), value=list(DEFAULT_HYPERNETWORK_SIZES), label="Modules",
            elem_id="es-train-hn-sizes",
            info="Attention widths to add modules for; widths the model does not have are left out.",
        )  # fmt: skip
        with gr.Row():
            self.hn_structure = gr.Textbox(
                value="1, 2, 1", label="Layer structure", elem_id="es-train-hn-structure",
                info="Size multipliers per layer, starting and ending with 1.",
            )  # fmt: skip
            self.hn_activation = gr.Dropdown(
                sorted(activation_classes()), value="linear", label="Activation", elem_id="es-train-hn-activation"
            )
            self.hn_init = gr.Dropdown(
                list(WEIGHT_INITS), value="Normal", label="Weight initialization", elem_id="es-train-hn-init"
            )
        with gr.Row():
            self.hn_layer_norm = gr.Checkbox(label="Add layer normalization", elem_id="es-train-hn-layer-norm")
            self.hn_dropout = gr.Checkbox(label="Use dropout", elem_id="es-train-hn-dropout")
            self.hn_last_dropout = gr.Checkbox(
                label="Dropout on the last layer too", elem_id="es-train-hn-last-dropout"
            )
            self.hn_activate_output = gr.Checkbox(label="Activate the output", elem_id="es-train-hn-activate-output")
        self.hn_dropout_structure = gr.Textbox(
            label="Dropout structure", placeholder="empty: the WebUI's default; e.g. 0, 0.05, 0.15",
            elem_id="es-train-hn-dropout-structure",
            info="One value per layer, starting and ending with 0 (needs 'Use dropout').",
        )  # fmt: skip
        with gr.Row():
            self.hn_overwrite = gr.Checkbox(
                value=False, label="Overwrite an existing file of that name", elem_id="es-train-hn-overwrite"
            )
            self.hn_button = gr.Button("Create hypernetwork", variant="primary", elem_id="es-train-hn-create")
        self.hn_status = gr.Markdown("", elem_id="es-train-hn-status", elem_classes=["es-status-line"])

    def set_callbacks(self, *, model_path: Any, dataset: Any, clip_skip: Any, kind: Any, target: Any) -> None:
        outputs_emb = [self.emb_status, kind, target]
        inputs_emb = [
            model_path, dataset, clip_skip, self.emb_name, self.emb_init, self.emb_vectors, self.emb_overwrite,
        ]  # fmt: skip
        self.emb_event = self.emb_button.click(self._create_embedding, inputs=inputs_emb, outputs=outputs_emb)
        # The same, then the Train panel starts on the new file (wired there).
        self.emb_train_event = self.emb_train_button.click(
            self._create_embedding, inputs=inputs_emb, outputs=outputs_emb
        )
        hn_inputs = [
            model_path, self.hn_name, self.hn_sizes, self.hn_structure, self.hn_activation, self.hn_init,
            self.hn_layer_norm, self.hn_dropout, self.hn_last_dropout, self.hn_dropout_structure,
            self.hn_activate_output, self.hn_overwrite,
        ]  # fmt: skip
        self.hn_event = self.hn_button.click(
            self._create_hypernetwork, inputs=hn_inputs, outputs=[self.hn_status, kind, target]
        )

    # -- handlers --------------------------------------------------------------------------
    def _new_path(self, kind: str, name: str, overwrite: bool, family: str = "") -> Path:
        if not (name or "").strip():
            raise UserInputError("Enter a name first.")
        path = default_target(folder_for(kind, self.provider), name, family)
        if path.exists() and not overwrite:
            raise UserInputError(
                f"{path.name} already exists. Pick another name, tick Overwrite to replace it, or Train that file "
                "to continue it."
            )
        return path

    def _model(self, model_path: str | None) -> str:
        return form.model_for(self.provider, model_path) if self.provider.needs_model_path else ""

    def _picked(self, kind: str, path: Path) -> tuple[Any, Any]:
        """Updates that point the Train form at the new file."""
        choices = form.trainable_files(kind, self.provider)
        folder = folder_for(kind, self.provider)
        value = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)
        return gr.update(value=kind), gr.update(choices=choices, value=value)

    def _create_embedding(self, model_path, dataset, clip_skip, name, init_text, vectors, overwrite) -> Iterator[tuple]:
        from embed_studio.formats.embedding import save_embedding
        from embed_studio.train.create import create_embedding

        keep = (gr.update(), gr.update())
        try:
            path = self._new_path("embedding", name, overwrite)
            n_vectors = form.whole_number(vectors, "Vectors per token")
            clip = form.coerce("clip_skip", clip_skip, "CLIP skip")
            model = self._model(model_path)
        except EmbedStudioError as e:
            yield (f"**Cannot create:** {e}", *keep)
            return
        yield ("Loading the model to read the initialization text…", *keep)
        try:
            with self.provider.session(model, CHECKPOINT_VAE, clip) as backend:
                data = create_embedding(backend, name, init_text or "", n_vectors, clip_skip=clip)
            if data.is_sdxl:
                path = self._new_path("embedding", name, overwrite, "sdxl")  # SDXL files are .safetensors
            path.parent.mkdir(parents=True, exist_ok=True)
            save_embedding(data, path)
        except (EmbedStudioError, OSError) as e:
            yield (f"**Cannot create:** {e}", *keep)
            return
        self.provider.refresh("embedding", path)
        message = f"Created {path} ({data.n_vectors} vector(s) of {data.dim}). It is picked in the Train tab."
        warning = _clash_warning(data.name, dataset)
        yield (message + (f"\n\n⚠ {warning}" if warning else ""), *self._picked("embedding", path))

    def _create_hypernetwork(
        self, model_path, name, sizes, structure, activation, weight_init, layer_norm, dropout, last_dropout,
        dropout_structure, activate_output, overwrite,
    ) -> Iterator[tuple]:  # fmt: skip
        from embed_studio.formats.hypernetwork import save_hypernetwork
        from embed_studio.train.create import create_hypernetwork

        keep = (gr.update(), gr.update())
        try:
            path = self._new_path("hypernetwork", name, overwrite)
            wanted = [int(s) for s in sizes or []]
            if not wanted:
                raise UserInputError("Tick at least one module size.")
            model = self._model(model_path) if (model_path or "").strip() or not self.provider.needs_model_path else ""
        except EmbedStudioError as e:
            yield (f"**Cannot create:** {e}", *keep)
            return
        options = dict(
            layer_structure=structure or "1, 2, 1", activation_func=activation or "linear",
            weight_init=weight_init or "Normal", add_layer_norm=bool(layer_norm), use_dropout=bool(dropout),
            dropout_structure=(dropout_structure or "").strip() or None, last_layer_dropout=bool(last_dropout),
            activate_output=bool(activate_output),
        )  # fmt: skip
        note = ""
        try:
            if model or not self.provider.needs_model_path:
                yield ("Loading the model to read its attention widths…", *keep)
                with self.provider.session(model, CHECKPOINT_VAE, self.provider.default_clip_skip()) as backend:
                    usable, note = _usable_sizes(wanted, backend.context_sizes)
                    data = create_hypernetwork(name, usable, backend=backend, **options)
            else:
                note = "No model given, so the sizes were not checked against one."
                data = create_hypernetwork(name, wanted, **options)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_hypernetwork(data, path)
        except (EmbedStudioError, OSError) as e:
            yield (f"**Cannot create:** {e}", *keep)
            return
        self.provider.refresh("hypernetwork", path)
        message = f"Created {path} (sizes {', '.join(map(str, data.sizes))}). It is picked in the Train tab."
        yield (message + (f"\n\n{note}" if note else ""), *self._picked("hypernetwork", path))


def _usable_sizes(wanted: list[int], available: tuple[int, ...]) -> tuple[list[int], str]:
    """The ticked sizes the model has; all of the model's when none match (a model of another family)."""
    usable = [s for s in wanted if s in available]
    if not usable:
        return list(available), (
            f"None of {', '.join(map(str, wanted))} fits this model; used its widths {', '.join(map(str, available))}."
        )
    dropped = [s for s in wanted if s not in available]
    note = f"Left out {', '.join(map(str, dropped))}: this model has no such attention width." if dropped else ""
    return usable, note


def _clash_warning(name: str, dataset: str | None) -> str:
    """The guide's "don't name it 1girl": the name is already a tag in the dataset's captions."""
    folder = (dataset or "").strip()
    if not folder:
        return ""
    from embed_studio.dataset.folder import list_images
    from embed_studio.train.prompts import image_caption

    try:
        captions = [image_caption(p) for p in list_images(folder)]
    except (EmbedStudioError, OSError):
        return ""
    clashes = name_clashes(clean_name(name), captions)
    if not clashes:
        return ""
    return (
        f"'{clean_name(name)}' is already a tag in {clashes} caption(s) of {folder}: prompts cannot tell the embedding "
        "from that tag. Consider another name (tick Overwrite to replace this file), or remove the tag."
    )
