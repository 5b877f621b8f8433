"""The Tagger panel: WD tagger options, dry run, tag a whole folder as a job, unload the model."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from embed_studio.errors import EmbedStudioError
from embed_studio.jobs import Job, JobStatus
from embed_studio.progress import status_line
from embed_studio.tagger.caption import ACTION_LABELS, ACTIONS, SKIP
from embed_studio.tagger.model import loaded_models, unload_models
from embed_studio.tagger.options import (
    DEFAULT_CATEGORIES,
    SORT_MODES,
    TAGGER_CATEGORIES,
    TaggerOptions,
    parse_thresholds,
)
from embed_studio.tagger.pipeline import FAILED, TagRequest, TagSummary, make_tag_job, tag_image
from embed_studio.tagger.registry import DEFAULT_MODEL, MODELS, find_spec, model_names
from embed_studio.tagspell import DEFAULT_ORDER, KAOMOJI
from embed_studio.ui.base import Tab, hidden
from embed_studio.ui.jobs_ui import follow_job


def _tags(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def render_tag_counts(summary: TagSummary, limit: int = 40) -> str:
    """The most frequent tags of a run: what the pruning step will look at first."""
    common = summary.tag_counts().most_common(limit)
    if not common:
        return ""
    chips = " ".join(f'<span class="es-tagger-tag">{html.escape(t)} <b>{n}</b></span>' for t, n in common)
    return f'<p class="es-tagger-counts">Most common tags: {chips}</p>'


def render_results(summary: TagSummary, limit: int = 50) -> str:
    """An HTML table of per-image tags (dry run) or of the failures (real run), then tag counts."""
    rows = summary.results if summary.dry_run else summary.failed
    counts = "" if summary.dry_run else render_tag_counts(summary)
    if not rows:
        return counts
    out = ['<table class="es-tagger-results"><tr><th>Image</th><th>Tags</th><th>Caption</th></tr>']
    for r in rows[:limit]:
        if r.status == FAILED:
            tags = f'<span class="es-tagger-error">{html.escape(r.error or "failed")}</span>'
            caption = ""
        else:
            tags = " ".join(f'<span class="es-tagger-tag">{html.escape(t)}</span>' for t in r.tags)
            if r.caption is None:
                caption = "left alone (has a caption; action: skip)"
            elif r.previous:
                caption = f"would become: {html.escape(r.caption)}"
            else:
                caption = "new caption"
        out.append(f"<tr><td>{html.escape(r.path.name)}</td><td>{tags}</td><td>{caption}</td></tr>")
    if len(rows) > limit:
        out.append(f"<tr><td colspan=3>… and {len(rows) - limit} more</td></tr>")
    out.append("</table>")
    return "".join(out) + counts


def provider_text() -> str:
    models = loaded_models()
    if not models:
        return "No tagger loaded."
    return "Loaded: " + "; ".join(m.describe_provider() for m in models)


class TaggerTab(Tab):
    title = "Tagger"
    elem_id = "es-tagger"

    def create_ui(self) -> None:
        spec = MODELS[DEFAULT_MODEL]
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                self.folder = gr.Textbox(
                    label="Dataset folder", placeholder="/path/to/images", elem_id="es-tagger-folder"
                )
                with gr.Row():
                    self.model = gr.Dropdown(
                        label="Model (a name, or a folder holding model.onnx + selected_tags.csv)",
                        choices=model_names(),
                        value=DEFAULT_MODEL,
                        allow_custom_value=True,
                        elem_id="es-tagger-model",
                    )
                    self.device = gr.Radio(
                        ["auto", "cuda", "cpu"], value="auto", label="Device", elem_id="es-tagger-device"
                    )
                with gr.Row():
                    self.general_threshold = gr.Slider(
                        0,
                        1,
                        value=spec.general_threshold,
                        step=0.01,
                        label="General threshold",
                        elem_id="es-tagger-general-threshold",
                    )
                    self.general_mcut = gr.Checkbox(
                        label="MCut: automatic general threshold", elem_id="es-tagger-general-mcut"
                    )
                with gr.Row():
                    self.character_threshold = gr.Slider(
                        0,
                        1,
                        value=spec.character_threshold,
                        step=0.01,
                        label="Character threshold",
                        elem_id="es-tagger-character-threshold",
                    )
                    self.character_mcut = gr.Checkbox(
                        label="MCut: automatic character threshold", elem_id="es-tagger-character-mcut"
                    )
                with gr.Row():
                    self.sort = gr.Radio(
                        list(SORT_MODES), value=SORT_MODES[0], label="Sort tags by", elem_id="es-tagger-sort"
                    )
                    self.max_tags = gr.Number(
                        value=0, precision=0, label="Max tags (0: no limit)", elem_id="es-tagger-max-tags"
                    )
                with gr.Row():
                    self.include_ratings = gr.Checkbox(label="Include rating", elem_id="es-tagger-ratings")
                    self.spaces = gr.Checkbox(
                        value=True, label="Spaces instead of underscores", elem_id="es-tagger-spaces"
                    )
                    self.escape = gr.Checkbox(label="Escape brackets", elem_id="es-tagger-escape")
                    self.weights = gr.Checkbox(label="Write confidences (tag:0.87)", elem_id="es-tagger-weights")
                    self.recursive = gr.Checkbox(label="Recursive", elem_id="es-tagger-recursive")
                    self.unload_after = gr.Checkbox(
                        label="Unload model after running", elem_id="es-tagger-unload-after"
                    )
                with gr.Row():
                    self.categories = gr.CheckboxGroup(
                        list(TAGGER_CATEGORIES),
                        value=list(DEFAULT_CATEGORIES),
                        label="Categories written (WD has general and character; Z3D has e621's all)",
                        elem_id="es-tagger-categories",
                    )
                    self.category_thresholds = gr.Textbox(
                        label="Other categories' thresholds (default: the general one)",
                        placeholder="species=0.3, copyright=0.5",
                        elem_id="es-tagger-category-thresholds",
                    )
                self.exclude = gr.Textbox(
                    label="Exclude tags (comma-separated, underscores or spaces)", elem_id="es-tagger-exclude"
                )
                self.additional = gr.Textbox(
                    label="Additional tags (written first in every caption)", elem_id="es-tagger-additional"
                )
                self.underscore_exceptions = gr.Textbox(
                    value=", ".join(sorted(KAOMOJI)),
                    label="Keep underscores in (kaomoji)",
                    elem_id="es-tagger-underscore-exceptions",
                )
                self.on_existing = gr.Radio(
                    list(ACTIONS),
                    value=SKIP,
                    label="Existing captions",
                    info="; ".join(f"{a}: {ACTION_LABELS[a]}" for a in ACTIONS),
                    elem_id="es-tagger-on-existing",
                )
                self.merge_order = gr.Textbox(
                    value=", ".join(DEFAULT_ORDER),
                    label="Merge: category order of the merged caption",
                    elem_id="es-tagger-merge-order",
                )
                self.dry_count = gr.Slider(
                    1, 20, value=5, step=1, label="Dry run: images to show", elem_id="es-tagger-dry-count"
                )
                with gr.Accordion("Check one image (writes nothing)", open=False):
                    # Tagging starts only from the button: a dropped image never runs anything.
                    self.image = gr.Image(type="pil", image_mode="RGBA", label="Image", elem_id="es-tagger-image")
                    self.image_button = gr.Button("Tag this image", elem_id="es-tagger-image-run")
                    self.image_tags = gr.Textbox(label="Tags", lines=3, elem_id="es-tagger-image-tags")
                    self.image_ratings = gr.Label(label="Rating", elem_id="es-tagger-image-ratings")
                with gr.Row():
                    self.dry_button = gr.Button("Dry run (writes nothing)", elem_id="es-tagger-dry-run")
                    self.run_button = gr.Button("Tag folder", variant="primary", elem_id="es-tagger-run")
                    self.cancel_button = gr.Button("Cancel", elem_id="es-tagger-cancel")
                    self.unload_button = gr.Button("Unload model", elem_id="es-tagger-unload")
            with gr.Column(scale=2):
                self.status = gr.Markdown("Pick a folder, try a dry run, then tag.", elem_id="es-tagger-status")
                # The next step, once a run wrote captions, beside its result: the Dataset panel opens on the folder.
                self.next_button = gr.Button("Prune tags →", variant="primary", visible=False, elem_id="es-tagger-next")
                self.provider = gr.Markdown(provider_text(), elem_id="es-tagger-provider")
                self.results = gr.HTML(elem_id="es-tagger-results")
        self.job_id = gr.State(None)

    def _fields(self) -> dict[str, Any]:
        """The option components by name, in the order the handlers receive their values."""
        names = (
            "folder model device general_threshold general_mcut character_threshold character_mcut sort max_tags "
            "include_ratings spaces escape weights recursive unload_after exclude additional underscore_exceptions "
            "on_existing dry_count categories category_thresholds merge_order"
        ).split()
        return {name: getattr(self, name) for name in names}

    def set_callbacks(self, tabs: dict[str, Tab]) -> None:
        outputs = [self.job_id, self.status, self.provider, self.results]
        inputs = [self.job_id, *self._fields().values()]
        # Quick handlers skip the queue, so Cancel answers while a run holds a queue worker.
        self.model.change(
            self._model_defaults,
            inputs=[self.model],
            outputs=[self.general_threshold, self.character_threshold],
            queue=False,
        )
        self.dry_button.click(self._dry_run, inputs=inputs, outputs=outputs)
        self.run_after(self.run_button.click(hidden, outputs=[self.next_button], queue=False))
        self.cancel_button.click(self._cancel, inputs=[self.job_id], outputs=[self.status], queue=False)
        self.unload_button.click(self._unload, inputs=[self.job_id], outputs=[self.provider], queue=False)
        self.image_button.click(
            self._tag_single,
            inputs=[self.image, *self._fields().values()],
            outputs=[self.image_tags, self.image_ratings, self.provider],
        )
        self._wire_next_step(tabs)

    def run_after(self, event: Any) -> Any:
        """Tag the folder once `event` is done (the Tag button, or the Booru panel's next step); then offer
        the next step."""
        inputs = [self.job_id, *self._fields().values()]
        ran = event.then(self._tag, inputs=inputs, outputs=[self.job_id, self.status, self.provider, self.results])
        return ran.then(self._offer_next, inputs=[self.job_id], outputs=[self.next_button], queue=False)

    def _wire_next_step(self, tabs: dict[str, Tab]) -> None:
        dataset = tabs.get("es-dataset")
        if self.panels is None or not hasattr(dataset, "open_after"):
            return
        go = self.next_button.click(
            self._go_to_dataset, inputs=[self.folder], outputs=[dataset.folder, self.panels], queue=False
        )
        dataset.open_after(go)

    def _offer_next(self, job_id: str | None) -> Any:
        job = self.host.jobs.get(job_id) if job_id else None
        summary = getattr(job, "result", None)
        wrote = isinstance(summary, TagSummary) and not summary.dry_run and summary.written + summary.skipped > 0
        return gr.update(visible=wrote)

    def _go_to_dataset(self, folder: str) -> tuple[Any, Any]:
        return (folder or "").strip(), self.show_panel("es-dataset")

    # -- handlers (no logic here: build a request, follow the library's job) -------------
    @staticmethod
    def _model_defaults(name: str):
        spec = find_spec(name or "")
        if spec is None:
            return gr.update(), gr.update()
        return gr.update(value=spec.general_threshold), gr.update(value=spec.character_threshold)

    def _request(self, values: tuple, dry: bool) -> TagRequest:
        v = dict(zip(self._fields(), values, strict=True))
        folder = (v["folder"] or "").strip()
        if not folder:
            raise EmbedStudioError("Enter the dataset folder first.")
        return TagRequest(
            folder=folder,
            model=(v["model"] or "").strip(),
            options=self._options(v),
            on_existing=v["on_existing"],
            merge_order=tuple(_tags(v["merge_order"])),
            recursive=bool(v["recursive"]),
            dry_run=int(v["dry_count"]) if dry else 0,
            device=v["device"],
            models_dir=self.host.models_dir,
            unload_after=bool(v["unload_after"]),
        )

    @staticmethod
    def _options(v: dict[str, Any]) -> TaggerOptions:
        return TaggerOptions(
            general_threshold=float(v["general_threshold"]),
            character_threshold=float(v["character_threshold"]),
            general_mcut=bool(v["general_mcut"]),
            character_mcut=bool(v["character_mcut"]),
            include_ratings=bool(v["include_ratings"]),
            max_tags=int(v["max_tags"] or 0),
            sort=v["sort"],
            replace_underscores=bool(v["spaces"]),
            underscore_exceptions=frozenset(_tags(v["underscore_exceptions"])),
            escape_brackets=bool(v["escape"]),
            weights=bool(v["weights"]),
            exclude_tags=_tags(v["exclude"]),
            additional_tags=_tags(v["additional"]),
            categories=tuple(v["categories"] or ()),
            category_thresholds=parse_thresholds(v["category_thresholds"]),
        )

    @staticmethod
    def _render(job):
        def render(status: JobStatus) -> tuple[Any, ...]:
            line = status_line(status, unit="img")
            if status.active and "written" in status.stats:
                counts = ", ".join(f"{status.stats.get(k, 0)} {k}" for k in ("written", "skipped", "failed"))
                line = f"{line} · {counts}"
            provider = status.stats.get("provider")
            provider_md = f"Provider: **{provider}**" if provider else provider_text()
            if provider and status.stats.get("provider_note"):
                provider_md += f" — {status.stats['provider_note']}"
            results = ""
            summary = job.result if not status.active else None
            if isinstance(summary, TagSummary):
                line = summary.describe()
                if summary.provider_note and summary.provider_note not in provider_md:
                    provider_md += f" — {summary.provider_note}"
                results = render_results(summary)
            elif status.error:
                line = f"**{status.state}**: {status.error}"
            return job.id, line, provider_md, results

        return render

    def _running(self, job_id: str | None) -> Job | None:
        """This browser's run while it goes, else any tagging run (a second click that raced the first)."""
        own = self.host.jobs.get(job_id) if job_id else None
        if own is not None and own.status().active:
            return own
        others = self.host.jobs.active("tag")
        return others[0] if others else None

    def _start(self, job_id, values: tuple, dry: bool):
        running = self._running(job_id)
        if running is not None:
            yield job_id, "A tagging run is still going: cancel it or wait for it to end.", gr.update(), gr.update()
            return
        try:
            request = self._request(values, dry)
        except EmbedStudioError as e:
            yield job_id, f"**Cannot start:** {e}", gr.update(), gr.update()
            return
        job = self.host.submit(make_tag_job(request))
        yield from follow_job(job, self._render(job))

    def _dry_run(self, job_id, *values):
        yield from self._start(job_id, values, dry=True)

    def _tag(self, job_id, *values):
        yield from self._start(job_id, values, dry=False)

    def _tag_single(self, image, *values):
        if image is None:
            return "Drop an image first.", None, gr.update()
        v = dict(zip(self._fields(), values, strict=True))
        try:
            selection = tag_image(
                image, (v["model"] or "").strip(), self._options(v), models_dir=self.host.models_dir, device=v["device"]
            )
        except EmbedStudioError as e:
            return f"Cannot tag: {e}", None, gr.update()
        return ", ".join(selection.tags), selection.ratings or None, provider_text()

    def _cancel(self, job_id):
        job = self._running(job_id)
        if job is None:
            return "Nothing is running."
        job.cancel()
        return "Cancelling after the current batch…"

    def _unload(self, job_id):
        count = unload_models()
        return f"Unloaded {count} tagger model(s)." if count else "No tagger was loaded."


TAB = TaggerTab
