"""The Train panel: create an embedding or hypernetwork, then train it with live status, previews and a loss plot."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from embed_studio.backends.base import SDXL_HYPERNETWORK_REFUSAL
from embed_studio.backends.provider import (
    CHECKPOINT_VAE,
    SDXL_SIDE,
    BackendProvider,
    folder_for,
    new_run_defaults,
    resolve_target,
)
from embed_studio.backends.samplers import SAMPLER_HELP
from embed_studio.errors import EmbedStudioError
from embed_studio.jobs import Job, JobStatus
from embed_studio.progress import status_line
from embed_studio.train.config import KINDS
from embed_studio.train.job import make_train_job
from embed_studio.train.option_help import GROUPS as BEYOND_GROUPS
from embed_studio.train.prompts import DEFAULT_TEMPLATE, list_templates
from embed_studio.ui import train_form as form
from embed_studio.ui.base import Tab
from embed_studio.ui.jobs_ui import follow_job
from embed_studio.ui.prefs import Prefs
from embed_studio.ui.train_analytics import AnalyticsPanel
from embed_studio.ui.train_create import CreatePanels
from embed_studio.ui.train_fields import make_field
from embed_studio.ui.train_txt2img import Txt2ImgPreview

NO_PROVIDER = "Training needs a model host: run it inside the WebUI, or standalone with `embed-studio ui`."
IDLE = "Pick the file to train and the dataset, then press **Train**."
TRAIN_SUBTAB = "train"
CREATE_SUBTAB = "create-embedding"
PLOT_SECONDS = 3.0
_UNSET = object()


def _unchanged() -> tuple[Any, Any, Any, Any]:
    """No change to the gallery, the loss plot, the file's line and the job marker (fresh dicts: gradio may edit them)."""
    return gr.update(), gr.update(), gr.update(), gr.update()


def job_marker(job_id: str, active: bool) -> str:
    """What javascript/es-train.js reads to show the run in the host's progress bar (the WebUI's)."""
    return f'<div data-es-job="{html.escape(job_id)}" data-es-active="{int(active)}"></div>'


class TrainTab(Tab):
    title = "Train"
    elem_id = "es-train"

    @property
    def provider(self) -> BackendProvider | None:
        return self.host.backend_provider

    # -- layout ----------------------------------------------------------------------------
    def create_ui(self) -> None:
        provider = self.provider
        if provider is None:
            gr.Markdown(NO_PROVIDER, elem_id="es-train-no-provider")
            return
        needs_path = provider.needs_model_path
        with gr.Row(equal_height=False, visible=needs_path):
            self.models_folder = gr.Textbox(
                self._remembered_models_folder, label="Models folder", scale=3, visible=needs_path,
                placeholder="/path/to/models", elem_id="es-train-models-folder",
                info="Set it once (it is remembered): its checkpoints and diffusers folders are listed beside it.",
            )  # fmt: skip
            self.model_pick = gr.Dropdown(
                form.find_models(self._remembered_models_folder()), label="Pick a model", scale=3,
                visible=needs_path, elem_id="es-train-model-pick",
            )  # fmt: skip
            self.model_pick_refresh = gr.Button(
                "🔄", scale=0, min_width=40, visible=needs_path, elem_id="es-train-model-pick-refresh"
            )
        with gr.Row(equal_height=False):
            self.model_path = gr.Textbox(
                label="Model", placeholder="/path/to/diffusers-folder or model.safetensors", scale=3,
                visible=provider.needs_model_path, elem_id="es-train-model",
                info="The checkpoint to train on (the guide: the base model, e.g. NAI, not a merge such as AnythingV3).",
            )  # fmt: skip
            self.model_info = gr.Markdown(
                provider.describe, visible=not provider.needs_model_path, elem_id="es-train-model-info"
            )
            self.model_refresh = gr.Button(
                "🔄", scale=0, min_width=40, visible=not provider.needs_model_path, elem_id="es-train-model-refresh"
            )
            self.dataset = gr.Textbox(
                label="Dataset folder", placeholder="/path/to/images (with .txt captions)", scale=3,
                elem_id="es-train-dataset",
            )  # fmt: skip
        # What the picked model changes in the form (SDXL: area, checkpointing, VAE, no hypernetworks).
        self.model_hint = gr.Markdown("", visible=False, elem_id="es-train-model-hint")
        self.model_defaults = gr.State(None)  # the model-following values the form last put in: see _model_changed
        with gr.Tabs(elem_id="es-train-tabs") as self.subtabs:
            with gr.Tab("Create embedding", id=CREATE_SUBTAB, elem_id="es-train-create-embedding-tab"):
                self.create = CreatePanels(self.host)
                self.create.embedding_ui()
            with gr.Tab("Create hypernetwork", elem_id="es-train-create-hypernetwork-tab"):
                self.create.hypernetwork_ui()
            with gr.Tab("Train", id=TRAIN_SUBTAB, elem_id="es-train-train-tab"):
                self._train_ui(provider)
        self.job_id = gr.State(None)
        self.resume_ok = gr.State(False)
        # On every page load: the settings of a run that is going (a reload during a run), as JSON; its change
        # fills the form. A load event through a component's value also works inside the WebUI's page.
        self.running_settings = gr.Textbox(self._running_settings_json, visible=False, elem_id="es-train-running")

    def _train_ui(self, provider: BackendProvider) -> None:
        fields: dict[str, Any] = {}

        def field(name: str, **kwargs: Any) -> Any:
            fields[name] = make_field(name, **kwargs)
            return fields[name]

        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                with gr.Row():
                    self.kind = gr.Radio(list(KINDS), value="embedding", label="Train", elem_id="es-train-kind")
                    self.target = gr.Dropdown(
                        form.trainable_files("embedding", provider), label="File to train", allow_custom_value=True,
                        scale=3, elem_id="es-train-target",
                        info="From the embeddings/hypernetworks folder, or a path. To resume, Train the same file "
                        "again: it continues from its step with its optimizer state.",
                    )  # fmt: skip
                    self.target_refresh = gr.Button("🔄", scale=0, min_width=40, elem_id="es-train-target-refresh")
                self.target_info = gr.Markdown("", elem_id="es-train-target-info")
                with gr.Row():
                    vaes = provider.vae_choices()
                    self.vae = gr.Dropdown(
                        vaes, value=vaes[0] if vaes else CHECKPOINT_VAE, label="VAE", elem_id="es-train-vae",
                        visible=not provider.needs_model_path or len(vaes) > 1,
                        allow_custom_value=provider.needs_model_path,  # standalone SDXL: a diffusers VAE folder
                        info="Keep the checkpoint's own VAE: another VAE fries embeddings (the guide).",
                    )  # fmt: skip
                    field("clip_skip", value=provider.default_clip_skip)
                    field("precision")
                with gr.Row():
                    field("lr", value=form.default_lr("embedding"), scale=3)
                    field("lr_scheduler")
                with gr.Accordion("Cosine schedule", open=False, elem_id="es-train-cosine"):
                    with gr.Row():
                        for name in ("cosine_min_lr", "cosine_cycle_steps", "cosine_warmup_steps"):
                            field(name)
                        for name in ("cosine_cycle_mult", "cosine_gamma"):
                            field(name)
                with gr.Row():
                    for name in ("batch_size", "grad_accum", "max_steps", "repeats"):
                        field(name)
                with gr.Row():
                    for name in ("save_every", "preview_every", "seed"):
                        field(name)
                with gr.Row():
                    templates = list(list_templates(provider.templates_dir))
                    field("template", choices=templates, value=DEFAULT_TEMPLATE, scale=3)
                    self.template_refresh = gr.Button("🔄", scale=0, min_width=40, elem_id="es-train-template-refresh")
                    field("latent_sampling", scale=2)
                with gr.Row():
                    for name in ("shuffle_tags", "keep_first_tags", "tag_dropout"):
                        field(name)
                with gr.Row():
                    sized = getattr(provider, "default_size", None)  # 1024 on SDXL: read when the page loads
                    for name in ("width", "height"):
                        field(name, **({"value": sized} if sized else {}))
                    field("variable_size")
                with gr.Row():
                    field("clip_grad_mode")
                    field("clip_grad_value")
                with gr.Accordion("Previews", open=False, elem_id="es-train-previews"):
                    self.txt2img = Txt2ImgPreview(self.host)  # the WebUI's "read parameters from txt2img"
                    self.txt2img.create_ui()
                    field("preview_prompt")
                    field("preview_negative_prompt")
                    with gr.Row():
                        for name in ("preview_steps", "preview_cfg_scale", "preview_seed"):
                            field(name)
                        samplers = getattr(provider, "preview_samplers", None)  # standalone: all of diffusers'
                        field("preview_sampler", **({"choices": samplers(), "info": SAMPLER_HELP} if samplers else {}))
                        schedulers = getattr(provider, "preview_schedulers", None)  # the WebUI: all of its own
                        field("preview_scheduler", **({"choices": schedulers()} if schedulers else {}))
                    with gr.Row():
                        for name in ("preview_width", "preview_height", "preview_with_embedding"):
                            field(name)
                for title, rows in BEYOND_GROUPS.items():
                    slug = title.lower().replace(" ", "-")
                    with gr.Accordion(title, open=False, elem_id=f"es-train-{slug}"):
                        for row in rows:
                            with gr.Row():
                                for name in row:
                                    field(name)
                with gr.Accordion("Presets", open=False, elem_id="es-train-presets"):
                    with gr.Row():
                        self.preset = gr.Dropdown(
                            form.preset_names(provider), label="Preset", allow_custom_value=True, scale=3,
                            info="Named settings (not the model, data or file). Type a new name to save one.",
                            elem_id="es-train-preset",
                        )  # fmt: skip
                        self.preset_load = gr.Button("Load", scale=0, min_width=80, elem_id="es-train-preset-load")
                        self.preset_save = gr.Button("Save", scale=0, min_width=80, elem_id="es-train-preset-save")
                    self.preset_info = gr.Markdown("", elem_id="es-train-preset-info")
                with gr.Accordion("Advanced", open=False, elem_id="es-train-advanced"):
                    with gr.Row():
                        field("name")
                        field("log_dir", placeholder=f"empty: {Path(provider.log_dir) / '<name>'}")
                        field("templates_dir", value=str(provider.templates_dir or ""))
                    with gr.Row():
                        field("caption_regex")
                        field("caption_join")
                        field("bucket_step")
                    with gr.Row():
                        field("half_weights")
                        # On by default on SDXL (read when the page loads, like the area), off on SD 1.x/2.x.
                        field(
                            "gradient_checkpointing", value=lambda: new_run_defaults(provider)["gradient_checkpointing"]
                        )
                        for name in ("use_alpha_weight", "escape_filewords"):
                            field(name)
                    with gr.Row():
                        for name in ("adam_beta1", "adam_beta2", "adam_eps", "weight_decay", "clip_grad_norm_type"):
                            field(name)
            with gr.Column(scale=2):
                with gr.Row():
                    self.train_button = gr.Button("Train", variant="primary", elem_id="es-train-start")
                    self.interrupt_button = gr.Button("Interrupt", elem_id="es-train-interrupt")
                    self.resume_button = gr.Button("Resume", elem_id="es-train-resume")
                    self.attach_button = gr.Button("Show running job", elem_id="es-train-attach")
                # Inside the WebUI its progress bar appears in the anchor (javascript/es-train.js), which no event
                # updates, so gradio never re-renders it away; the job marker beside it says which run to show.
                gr.HTML('<div class="es-progress-anchor"></div>', elem_id="es-train-progress")
                self.job_marker = gr.HTML("", elem_id="es-train-job")
                self.status = gr.Markdown(self._idle_status, elem_id="es-train-status", elem_classes=["es-status-line"])
                self.gallery = gr.Gallery(
                    label="Previews (newest first)", columns=3, height="auto", elem_id="es-train-gallery"
                )
                self.loss_plot = gr.Image(
                    label="Loss", type="pil", interactive=False, show_download_button=True, elem_id="es-train-loss"
                )
                self.analytics = AnalyticsPanel(provider)
                self.analytics.create_ui()
        missing = set(form.form_fields()) - set(fields)
        if missing:  # a new TrainConfig field must get a place on the form (or in form.OWN_CONTROLS)
            raise RuntimeError(f"Train tab has no field for: {', '.join(sorted(missing))}")
        self.fields = {name: fields[name] for name in form.form_fields()}

    @staticmethod
    def show_create() -> Any:
        """The update that opens the Create embedding form (the Dataset panel's next step)."""
        return gr.Tabs.update(selected=CREATE_SUBTAB)

    # -- wiring ----------------------------------------------------------------------------
    def set_callbacks(self, tabs: dict[str, Tab]) -> None:
        if self.provider is None:
            return
        fields = self.fields
        live = [self.job_id, self.status, self.gallery, self.loss_plot, self.target_info, self.job_marker]
        train_inputs = [self.job_id, self.model_path, self.dataset, self.kind, self.target, self.vae, *fields.values()]
        train_inputs += self.txt2img.inputs
        trained = self.train_button.click(self._train, inputs=train_inputs, outputs=live)
        self.attach_button.click(self._attach, inputs=[self.job_id], outputs=live)
        # Resume: the file's last run settings back into the form (e.g. after a reload), then Train as usual.
        # A file that cannot be resumed is said in the status line, and nothing starts.
        self.resume_button.click(
            self._load_saved_run, inputs=[self.kind, self.target],
            outputs=[self.resume_ok, self.status, self.model_path, self.dataset, self.vae, *fields.values()],
            queue=False,
        ).then(self._resume, inputs=[self.resume_ok, *train_inputs], outputs=live)  # fmt: skip
        self.running_settings.change(
            self._fill_running, inputs=[self.running_settings],
            outputs=[self.model_path, self.dataset, self.kind, self.target, self.vae, *fields.values()], queue=False,
        )  # fmt: skip
        # Quick handlers skip the queue, so they answer while a run's handler holds a queue worker.
        self.interrupt_button.click(self._interrupt, inputs=[self.job_id], outputs=[self.status], queue=False)
        self.kind.change(
            self._kind_changed, inputs=[self.kind, self.target, fields["lr"]], outputs=[self.target, fields["lr"]],
            queue=False,
        )  # fmt: skip
        self.target.change(
            self._target_changed, inputs=[self.kind, self.target], outputs=[self.target_info, fields["clip_skip"]],
            queue=False,
        )  # fmt: skip
        self.target_refresh.click(
            self._refresh_targets, inputs=[self.kind, self.target], outputs=[self.target], queue=False
        )
        self.template_refresh.click(
            self._refresh_templates, inputs=[fields["templates_dir"], fields["template"]], outputs=[fields["template"]],
            queue=False,
        )  # fmt: skip
        self.model_refresh.click(
            self._refresh_model, inputs=[self.vae], outputs=[self.model_info, self.vae], queue=False
        )
        # Listed as it changes (also when a page load puts the remembered folder in), remembered once entered.
        self.models_folder.change(
            self._list_models, inputs=[self.models_folder], outputs=[self.model_pick], queue=False
        )
        for event in (self.models_folder.submit, self.models_folder.blur, self.model_pick_refresh.click):
            event(self._models_folder_set, inputs=[self.models_folder], outputs=[self.model_pick], queue=False)
        follow = dict(
            fn=self._model_changed, queue=False,
            inputs=[self.model_path, fields["width"], fields["height"], fields["gradient_checkpointing"],
                    self.model_defaults],
            outputs=[fields["width"], fields["height"], fields["gradient_checkpointing"], self.vae, self.model_hint,
                     self.model_defaults],
        )  # fmt: skip
        self.model_pick.input(
            lambda picked: picked or gr.update(), inputs=[self.model_pick], outputs=[self.model_path]
        ).then(**follow)
        # As the path is typed or pasted (reading a header or model_index.json is cheap), not on blur: the blur of a
        # click elsewhere comes late and would race that click.
        for event in (self.model_path.submit, self.model_path.input):
            event(**follow)
        self.create.set_callbacks(
            model_path=self.model_path, dataset=self.dataset, clip_skip=fields["clip_skip"], kind=self.kind,
            target=self.target,
        )  # fmt: skip
        self.preset_save.click(
            self._save_preset, inputs=[self.preset, *fields.values()], outputs=[self.preset, self.preset_info],
            queue=False,
        )  # fmt: skip
        self.preset_load.click(
            self._load_preset, inputs=[self.preset], outputs=[*fields.values(), self.preset_info], queue=False
        )
        # A new file is what one trains next: the Train sub-tab opens with it picked.
        for event, status in (
            (self.create.emb_event, self.create.emb_status),
            (self.create.hn_event, self.create.hn_status),
            (self.create.emb_train_event, self.create.emb_status),
        ):
            event.then(_open_train_if_created, inputs=[status], outputs=[self.subtabs], queue=False)
        # "Create & train": the new file trains at once with the form's settings.
        created_and_trained = self.create.emb_train_event.then(
            self._train_if_created, inputs=[self.create.emb_status, *train_inputs], outputs=live
        )
        self.analytics.set_callbacks(
            kind=self.kind, target=self.target, name=fields["name"], log_dir=fields["log_dir"],
            after=[trained, created_and_trained],
        )  # fmt: skip
        self._follow_other_tabs(tabs)

    def _save_preset(self, name: str, *values: Any) -> tuple[Any, str]:
        labels = {n: getattr(c, "label", None) or n for n, c in self.fields.items()}
        try:
            message = form.save_form_preset(self.provider, name, dict(zip(self.fields, values, strict=True)), labels)
        except EmbedStudioError as e:
            raise gr.Error(str(e)) from e
        return gr.update(choices=form.preset_names(self.provider), value=name.strip()), message

    def _load_preset(self, name: str) -> list[Any]:
        try:
            settings = form.load_form_preset(self.provider, name)
        except EmbedStudioError as e:
            raise gr.Error(str(e)) from e
        updates = [settings[n] if n in settings else gr.update() for n in self.fields]
        return [*updates, f"Loaded preset **{name.strip()}**: {len(settings)} settings."]

    def _follow_other_tabs(self, tabs: dict[str, Tab]) -> None:
        """The folder opened in the dataset editor (the step before training) fills an empty dataset field."""
        for key in ("es-dataset", "es-tagger"):
            source = getattr(tabs.get(key), "folder", None)
            if isinstance(source, gr.Textbox):
                source.blur(
                    lambda src, cur: cur or (src or "").strip(), inputs=[source, self.dataset], outputs=[self.dataset]
                )

    # -- small handlers --------------------------------------------------------------------
    def _idle_status(self) -> str:
        running = self.host.jobs.active("train")
        if running:
            status = running[0].status()
            return (
                f"A training run is going: {describe_run(status)} ({status_line(status)}). Its settings are in the "
                "form; press **Show running job** to follow it."
            )
        return IDLE

    def _remembered_models_folder(self) -> str:
        return str(Prefs(self.host.prefs_path).get("models_folder", "") or "")

    def _models_folder_set(self, folder: str):
        folder = (folder or "").strip()
        if not folder or Path(folder).expanduser().is_dir():
            try:
                Prefs(self.host.prefs_path).set("models_folder", folder)
            except OSError:
                pass  # not remembered this time; the list still works
        return self._list_models(folder)

    @staticmethod
    def _list_models(folder: str):
        folder = (folder or "").strip()
        if folder and not Path(folder).expanduser().is_dir():
            return gr.update(choices=[], label=f"Pick a model (no folder {folder})")
        models = form.find_models(folder)
        if not folder:
            label = "Pick a model"
        elif models:
            label = f"Pick a model ({len(models)} in {folder})"
        else:
            label = f"Pick a model (no checkpoints or diffusers folders in {folder})"
        return gr.update(choices=models, label=label)

    def _model_changed(self, model: str, width: Any, height: Any, checkpointing: bool, last: dict | None):
        """The area and gradient checkpointing follow the model where they still hold the value the form last put
        in (as the rate follows the kind); a value typed by hand stays. The VAE choice and the hint follow too."""
        model = (model or "").strip()
        last = dict(last or new_run_defaults(self.provider))
        wanted = new_run_defaults(self.provider, model)
        current = {"width": width, "height": height, "gradient_checkpointing": checkpointing}
        values = []
        for name, value in wanted.items():
            untouched = current[name] == last[name]
            # Nothing is sent for a value already there: a late event (the box's blur when the user clicks the
            # checkbox) would otherwise undo the click.
            values.append(value if untouched and current[name] != value else gr.update())
            last[name] = value if untouched else last[name]
        if wanted["width"] < SDXL_SIDE:
            # The standalone SD 1.x/2.x path trains with the checkpoint's own VAE only.
            return (*values, gr.update(visible=False, value=CHECKPOINT_VAE), gr.update(visible=False, value=""), last)
        hint = (
            f"**SDXL model**: a {SDXL_SIDE}×{SDXL_SIDE} training area and gradient checkpointing unless you set "
            f"them. {SDXL_HYPERNETWORK_REFUSAL} Its own VAE encodes in fp32 (in half precision it gives NaN); to "
            "encode in half precision, type an fp16-fixed diffusers VAE folder as **VAE**."
        )
        vae = gr.update(visible=True, info="The checkpoint's own VAE (in fp32), or a diffusers VAE folder.")
        return (*values, vae, gr.update(visible=True, value=hint), last)

    def _kind_changed(self, kind: str, target: str, lr: str):
        choices = form.trainable_files(kind, self.provider)
        value = target if target in choices else (choices[0] if choices else "")
        return gr.update(choices=choices, value=value), form.swap_default_lr(kind, lr)

    def _target_changed(self, kind: str, target: str):
        if not (target or "").strip():
            return "", gr.update()
        try:
            path = resolve_target(kind, target, self.provider)
        except EmbedStudioError as e:
            return str(e), gr.update()
        info = form.describe_target(kind, path)
        if info.clip_skip is None:
            return info.text, gr.update()
        return info.text + " (the form's CLIP skip follows it)", gr.update(value=info.clip_skip)

    def _refresh_targets(self, kind: str, target: str):
        return gr.update(choices=form.trainable_files(kind, self.provider), value=target)

    @staticmethod
    def _refresh_templates(templates_dir: str, current: str):
        choices = list(list_templates((templates_dir or "").strip() or None))
        return gr.update(choices=choices, value=current)

    def _refresh_model(self, vae: str):
        vaes = self.provider.vae_choices()
        return self.provider.describe(), gr.update(choices=vaes, value=vae if vae in vaes else vaes[0])

    def _load_saved_run(self, kind: str, target: str) -> list[Any]:
        """[resumable, status line, model, dataset, VAE, *fields]: the saved run's settings, or why there are none."""
        try:
            config = form.saved_run(kind, resolve_target(kind, target, self.provider), self.provider)
        except EmbedStudioError as e:
            return [False, f"**Cannot resume:** {e}", *(gr.update() for _ in range(3 + len(self.fields)))]
        vae = config.vae if config.vae in self.provider.vae_choices() else CHECKPOINT_VAE
        model = config.model if self.provider.needs_model_path else gr.update()
        line = f"Resuming {Path(config.target).name} with its last run's settings…"
        return [True, line, model, config.dataset, vae, *(getattr(config, name) for name in self.fields)]

    def _resume(self, ok: bool, *train_args: Any) -> Iterator[tuple]:
        if not ok:
            yield tuple(gr.update() for _ in range(6))
            return
        yield from self._train(*train_args)

    def _running_settings_json(self) -> str:
        """The settings of the training run that is going (to put back into a reloaded page), or ""."""
        import json

        running = self.host.jobs.active("train")
        settings = running[0].status().stats.get("settings") if running else None
        return json.dumps(settings, sort_keys=True) if settings else ""

    def _fill_running(self, settings_json: str) -> list[Any]:
        import json

        outputs = 5 + len(self.fields)
        if not settings_json:
            return [gr.update() for _ in range(outputs)]
        settings = json.loads(settings_json)
        vae = settings.get("vae") or CHECKPOINT_VAE
        model = settings.get("model", "") if self.provider.needs_model_path else gr.update()
        kind = settings.get("kind", "embedding")
        target = _display_target(kind, settings.get("target", ""), self.provider)
        values = [settings.get(name, form.default(name)) for name in self.fields]
        return [model, settings.get("dataset", ""), kind, target, vae, *values]

    def _interrupt(self, job_id: str | None) -> str:
        job = self._find_job(job_id)
        if job is None or not job.status().active:
            return "Nothing is training."
        job.cancel()
        return "Interrupting: the current step finishes, then the file and its optimizer state are saved…"

    def _find_job(self, job_id: str | None) -> Job | None:
        """This browser's run while it is going, else any running training (another tab, the API), else ours, else
        the last run: after a reload, or when Interrupt ended it before Show running job was served, the page then
        shows how that run ended instead of "nothing"."""
        own = self.host.jobs.get(job_id) if job_id else None
        if own is not None and own.status().active:
            return own
        running = self.host.jobs.active("train")
        return running[0] if running else own or self.host.jobs.latest("train")

    # -- training ----------------------------------------------------------------------------
    def _train(self, job_id: str | None, model_path, dataset, kind, target, vae, *values) -> Iterator[tuple]:
        running = self._find_job(job_id)
        if running is not None and running.status().active:
            yield (
                running.id, f"**Not started:** {describe_run(running.status())} is going. Interrupt it or wait for "
                "it to end (**Show running job** follows it).",
                *_unchanged(),
            )  # fmt: skip
            return
        labels = {name: getattr(c, "label", None) or name for name, c in self.fields.items()}
        values, txt2img = values[: len(self.fields)], values[len(self.fields) :]
        try:
            config, vae = form.build_config(
                self.provider, kind=kind, model_path=model_path, dataset=dataset, target=target, vae=vae,
                values=self.txt2img.apply(dict(zip(self.fields, values, strict=True)), txt2img), labels=labels,
            )  # fmt: skip
        except EmbedStudioError as e:
            yield job_id, f"**Cannot start:** {e}", *_unchanged()
            return
        job = self.host.submit(make_train_job(config, self.provider, vae))
        yield from follow_job(job, self._render(job))

    def _train_if_created(self, create_status: str, *train_args: Any) -> Iterator[tuple]:
        if not (create_status or "").startswith("Created"):
            yield tuple(gr.update() for _ in range(6))
            return
        yield from self._train(*train_args)

    def _attach(self, job_id: str | None) -> Iterator[tuple]:
        job = self._find_job(job_id)
        if job is None:
            yield job_id, "No training run is going.", *_unchanged()
            return
        yield from follow_job(job, self._render(job))

    def _render(self, job: Job):
        """A render function for follow_job that sends the gallery and the plot only when they change."""
        sent: dict[str, Any] = {"images": _UNSET, "plot": _UNSET, "plotted_at": None}

        def render(status: JobStatus) -> tuple:
            if status.active:
                line = status_line(status)
                line += _prompts(status.stats)
                notes = status.stats.get("notes") or []
                if notes:
                    line += "\n\n" + "\n".join(_note(n) for n in notes)
            else:
                line = form.finished_message(status, job.result)
            images = form.preview_gallery(status.images)
            gallery = gr.update() if images == sent["images"] else images
            sent["images"] = images
            marker = job_marker(job.id, status.active)
            return job.id, line, gallery, self._plot(status, sent), self._target_after(status), marker

        return render

    @staticmethod
    def _target_after(status: JobStatus) -> Any:
        """Once a run has ended, the file's line shows the step it reached."""
        kind, target = status.stats.get("kind"), status.stats.get("target")
        if status.active or not kind or not target:
            return gr.update()
        return form.describe_target(kind, Path(target)).text

    @staticmethod
    def _plot(status: JobStatus, sent: dict[str, Any]) -> Any:
        """The loss plot, redrawn when the loss log changed on disk (every few steps, at previews and at the end),
        at most every PLOT_SECONDS while the run goes on: drawing it is not free for the server."""
        from embed_studio.train.lossplot import loss_log_path, plot_inputs_key, render_loss_plot

        log_dir = status.stats.get("log_dir")
        if not log_dir:
            return gr.update()
        path = loss_log_path(log_dir)
        key = plot_inputs_key(log_dir)  # the validation and preview-score logs change the plot too
        if key == sent["plot"]:
            return gr.update()
        now = time.monotonic()
        if status.active and sent["plotted_at"] is not None and now - sent["plotted_at"] < PLOT_SECONDS:
            return gr.update()  # not marked as sent: the next poll after the pause draws it
        sent["plot"], sent["plotted_at"] = key, now
        if key is None:
            return None
        try:
            return render_loss_plot(path, title=Path(status.stats.get("target", "")).stem, transparent=True)
        except ImportError:
            return gr.update()  # no matplotlib: the run is unaffected, only the plot is missing


def _open_train_if_created(create_status: str) -> Any:
    return gr.Tabs.update(selected=TRAIN_SUBTAB) if (create_status or "").startswith("Created") else gr.update()


def describe_run(status: JobStatus) -> str:
    """A running job by name, e.g. 'training run train-3 (mychar.pt)'."""
    target = status.stats.get("target")
    return f"training run {status.id}" + (f" ({Path(target).name})" if target else "")


def _display_target(kind: str, target: str, provider: BackendProvider) -> str:
    """The file as the form lists it: its name in the kind's folder, else its path."""
    try:
        return Path(target).relative_to(folder_for(kind, provider)).as_posix()
    except ValueError:
        return target


def _prompts(stats: dict[str, Any]) -> str:
    """The WebUI's "Last prompt", and the prompt the latest previews were drawn with."""
    lines = []
    if stats.get("prompt"):
        lines.append(f"Last prompt: {_literal(stats['prompt'])}")
    if stats.get("preview_prompt"):
        lines.append(f"Preview at step {stats.get('preview_step')}: {_literal(stats['preview_prompt'])}")
    return "".join(f"\n\n{line}" for line in lines)


def _literal(text: str) -> str:
    """A prompt as it is, in a code span: its brackets, backslashes and underscores are not Markdown."""
    quoted = html.escape(text.replace("`", "'"))
    return f"`{quoted}`"


def _note(message: str) -> str:
    return f"⚠ {message.removeprefix('warning: ')}" if message.startswith("warning: ") else message


TAB = TrainTab
