"""The Booru panel: fetch images from e621/Danbooru by query, captioned from the booru's own tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from embed_studio.booru.captions import MODES, OutputOptions
from embed_studio.booru.fetch import (
    DEFAULT_TYPES,
    CaptionOptions,
    ConnectionOptions,
    FetchOptions,
    FetchSummary,
    caption_job,
    default_folder,
    fetch_job,
    human_size,
    name_from_query,
)
from embed_studio.booru.sites import site_names
from embed_studio.booru.tagfilter import ALL_CATEGORIES, DEFAULT_CATEGORIES, TagOptions, parse_tag_field
from embed_studio.errors import EmbedStudioError
from embed_studio.jobs import Job, JobStatus
from embed_studio.progress import status_line
from embed_studio.tagger.caption import MERGE
from embed_studio.ui.base import Tab, hidden
from embed_studio.ui.jobs_ui import follow_job

FILE_TYPES = ("jpg", "png", "webp", "gif", "webm", "mp4", "swf")
GALLERY_SIZE = 12
OUTPUT_LABELS = {"sidecar": ".txt beside each image", "filename": "tags as file names", "kohya": "kohya N_name folder"}


class BooruTab(Tab):
    title = "Booru"
    elem_id = "es-booru"

    def create_ui(self) -> None:
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                with gr.Row():
                    self.site = gr.Radio(site_names(), value="e621", label="Site", elem_id="es-booru-site")
                    self.limit = gr.Number(value=150, precision=0, label="How many images", elem_id="es-booru-limit")
                self.query = gr.Textbox(
                    label="Search query (the site's own syntax)", placeholder="zangoose -female score:>0",
                    elem_id="es-booru-query",
                )  # fmt: skip
                self.folder = gr.Textbox(
                    label="Folder", placeholder="empty: a folder named after the query in the output folder",
                    elem_id="es-booru-folder",
                )  # fmt: skip
                with gr.Row():
                    self.username = gr.Textbox(
                        label="Your user name on the site (sent in the User-Agent, as e621 asks)",
                        placeholder=self._username_placeholder(), elem_id="es-booru-username",
                    )  # fmt: skip
                    self.api_key = gr.Textbox(
                        label="API key (optional: hidden posts, more Danbooru tags)", type="password",
                        elem_id="es-booru-api-key",
                    )  # fmt: skip
                with gr.Row():
                    self.fetch_button = gr.Button("Fetch", variant="primary", elem_id="es-booru-fetch")
                    self.caption_button = gr.Button("Caption existing folder (md5 lookup)", elem_id="es-booru-caption")
                    self.cancel_button = gr.Button("Cancel", elem_id="es-booru-cancel")
                # The next step, once a fetch brought images: the Tagger opens on them and starts.
                self.next_button = gr.Button(
                    "Tag these images →", variant="primary", visible=False, elem_id="es-booru-next"
                )
                with gr.Accordion("Files", open=False, elem_id="es-booru-files"):
                    with gr.Row():
                        self.types = gr.CheckboxGroup(
                            list(FILE_TYPES), value=list(DEFAULT_TYPES), label="File types", elem_id="es-booru-types"
                        )
                        self.max_mb = gr.Number(value=0, label="Max file size, MB (0: any)", elem_id="es-booru-max-mb")
                    with gr.Row():
                        self.size = gr.Radio(
                            ["original", "sample"], value="original", label="Size", elem_id="es-booru-size"
                        )
                        self.workers = gr.Slider(
                            1, 8, value=3, step=1, label="Parallel downloads", elem_id="es-booru-workers"
                        )
                with gr.Accordion("Captions", open=False, elem_id="es-booru-captions"):
                    with gr.Row():
                        self.write_captions = gr.Checkbox(
                            value=True, label="Write captions", elem_id="es-booru-write-captions"
                        )
                        self.output = gr.Radio(
                            [(OUTPUT_LABELS[m], m) for m in MODES],
                            value="sidecar", label="Captions as", elem_id="es-booru-output",
                        )  # fmt: skip
                    self.categories = gr.CheckboxGroup(
                        list(ALL_CATEGORIES), value=list(DEFAULT_CATEGORIES), label="Tag categories",
                        elem_id="es-booru-categories",
                    )  # fmt: skip
                    self.tag_list = gr.Textbox(
                        label="Model tag list (tag-autocomplete CSV or e621 tags export; path or URL, cached)",
                        elem_id="es-booru-tag-list",
                    )  # fmt: skip
                    with gr.Row():
                        self.keep_only_listed = gr.Checkbox(
                            value=True, label="Only tags in the list", elem_id="es-booru-only-listed"
                        )
                        self.sort_by_count = gr.Checkbox(
                            value=True, label="Sort by the list's counts", elem_id="es-booru-sort"
                        )
                        self.prepend_rating = gr.Checkbox(value=True, label="Prepend rating", elem_id="es-booru-rating")
                        self.prepend_artist = gr.Checkbox(value=True, label="Prepend artist", elem_id="es-booru-artist")
                    with gr.Row():
                        self.rating_template = gr.Textbox(
                            value="{rating} content", label="Rating as", elem_id="es-booru-rating-template"
                        )
                        self.artist_template = gr.Textbox(
                            value="by {artist}", label="Artist as", elem_id="es-booru-artist-template"
                        )
                    with gr.Row():
                        self.include = gr.Textbox(label="Always include (comma separated)", elem_id="es-booru-include")
                        self.exclude = gr.Textbox(label="Always exclude (* wildcards)", elem_id="es-booru-exclude")
                    with gr.Row():
                        self.spaces = gr.Checkbox(
                            value=True, label="Spaces instead of underscores", elem_id="es-booru-spaces"
                        )
                        self.escape = gr.Checkbox(
                            value=False, label="Escape brackets in files (WebUI Train tab)", elem_id="es-booru-escape"
                        )
                        self.overwrite = gr.Checkbox(
                            value=False, label="Replace existing captions", elem_id="es-booru-overwrite"
                        )
                    with gr.Row():
                        self.output_dir = gr.Textbox(
                            label="Copies go to (file-name/kohya modes; empty: inside the folder)",
                            elem_id="es-booru-output-dir",
                        )
                        self.kohya_repeats = gr.Number(
                            value=10, precision=0, label="Kohya repeats (N)", elem_id="es-booru-kohya-repeats"
                        )
                        self.kohya_name = gr.Textbox(value="subject", label="Kohya name", elem_id="es-booru-kohya-name")
                with gr.Accordion("Advanced: server", open=False, elem_id="es-booru-advanced"):
                    with gr.Row():
                        self.base_url = gr.Textbox(
                            label="Server URL (empty: the site's public server)", elem_id="es-booru-base-url"
                        )
                        self.interval = gr.Number(
                            value=1.0, label="Seconds between API requests", elem_id="es-booru-interval"
                        )
            with gr.Column(scale=2):
                self.progress = gr.Markdown("Enter a query and press Fetch.", elem_id="es-booru-progress")
                self.summary = gr.Textbox(label="Summary", lines=6, interactive=False, elem_id="es-booru-summary")
                self.gallery = gr.Gallery(label="Last downloaded", columns=4, height="auto", elem_id="es-booru-gallery")
        self.job_id = gr.State(None)

    def _connection_inputs(self) -> list:
        return [self.site, self.base_url, self.username, self.api_key, self.interval]

    def _tag_inputs(self) -> list:
        return [
            self.tag_list, self.categories, self.keep_only_listed, self.sort_by_count, self.prepend_rating,
            self.rating_template, self.prepend_artist, self.artist_template, self.include, self.exclude,
            self.spaces, self.escape, self.output, self.output_dir, self.kohya_repeats, self.kohya_name,
            self.overwrite,
        ]  # fmt: skip

    def set_callbacks(self, tabs: dict[str, Tab]) -> None:
        outputs = [self.job_id, self.progress, self.summary, self.gallery]
        common = [*self._connection_inputs(), *self._tag_inputs()]
        fetch_inputs = [self.job_id, self.query, self.folder, self.limit, self.types, self.max_mb, self.size,
                        self.workers, self.write_captions, *common]  # fmt: skip
        fetched = self.fetch_button.click(self._fetch, inputs=fetch_inputs, outputs=outputs)
        tagger = tabs.get("es-tagger")
        if isinstance(getattr(tagger, "folder", None), gr.Textbox) and hasattr(tagger, "on_existing"):
            # The next step is tagging what was fetched: the folder goes along, and with the booru's captions
            # already written the tagger merges into them (its default, skip, would tag nothing).
            # The later panels' empty folder boxes (Dataset, Train's dataset) take it too: no box was typed in,
            # so their usual follow-the-tagger-on-blur never fires.
            later = [
                getattr(tabs.get(key), attr, None) for key, attr in (("es-dataset", "folder"), ("es-train", "dataset"))
            ]
            later = [box for box in later if isinstance(box, gr.Textbox)]
            fetched.then(
                self._hand_on, inputs=[self.job_id, tagger.folder, *later],
                outputs=[tagger.folder, tagger.on_existing, *later], queue=False,
            )  # fmt: skip
        self._wire_next_step(fetched, tabs)
        self.caption_button.click(self._caption, inputs=[self.job_id, self.folder, *common], outputs=outputs)
        self.cancel_button.click(self._cancel, inputs=[self.job_id], outputs=[self.progress])

    def _wire_next_step(self, fetched: Any, tabs: dict[str, Tab]) -> None:
        """'Tag these images →' shows after a fetch that brought images; the Train panel's empty embedding name
        takes the query's. Clicked, it opens the Tagger on the fetched folder and starts tagging."""
        self.fetch_button.click(hidden, outputs=[self.next_button], queue=False)
        name = getattr(getattr(tabs.get("es-train"), "create", None), "emb_name", None)
        names = [name] if isinstance(name, gr.Textbox) else []
        fetched.then(
            self._offer_next, inputs=[self.job_id, self.query, *names],
            outputs=[self.next_button, self.progress, *names], queue=False,
        )  # fmt: skip
        tagger = tabs.get("es-tagger")
        if self.panels is None or not hasattr(tagger, "run_after"):
            return
        go = self.next_button.click(
            self._go_to_tagger, inputs=[self.job_id],
            outputs=[tagger.folder, tagger.on_existing, self.panels], queue=False,
        )  # fmt: skip
        tagger.run_after(go)

    def _fetched(self, job_id: str | None) -> FetchSummary | None:
        job = self.host.jobs.get(job_id) if job_id else None
        summary = getattr(job, "result", None)
        return summary if isinstance(summary, FetchSummary) and summary.folder else None

    def _offer_next(self, job_id: str | None, query: str, *name: str) -> tuple[Any, ...]:
        summary = self._fetched(job_id)
        if summary is None:
            return (gr.update(visible=False), gr.update(), *(gr.update() for _ in name))
        if not summary.downloaded + summary.present:
            why = " ".join(summary.notes) or "Try another query or a larger number of images."
            return (gr.update(visible=False), f"**Nothing fetched** into {summary.folder}. {why}",
                    *(gr.update() for _ in name))  # fmt: skip
        wanted = name_from_query(query or "")
        names = (gr.update() if (box or "").strip() or not wanted else wanted for box in name)
        return (gr.update(visible=True), gr.update(), *names)

    def _go_to_tagger(self, job_id: str | None) -> tuple[Any, ...]:
        """The Tagger on the fetched folder. The button stays: after a failed tagging (no model) it runs again."""
        summary = self._fetched(job_id)
        if summary is None:
            return gr.update(), gr.update(), gr.update()
        action = MERGE if summary.captions or summary.captions_kept else gr.update()
        return summary.folder, action, self.show_panel("es-tagger")

    def _username_placeholder(self) -> str:
        saved = self.host.setting("booru_user_agent_name")
        return f"empty: {saved} (from Settings)" if saved else "empty: none (set one in Settings → Embed Studio)"

    # -- building the library's options from the form -------------------------------------
    def _connection(self, site, base_url, username, api_key, interval) -> ConnectionOptions:
        # Read when the fetch starts, so a name saved in Settings applies without reloading the page.
        username = (username or "").strip() or self.host.setting("booru_user_agent_name", "")
        return ConnectionOptions(
            site=site or "e621", base_url=(base_url or "").strip(), username=username, api_key=api_key or "",
            min_interval=max(0.0, float(interval if interval is not None else 1.0)),
        )  # fmt: skip

    def _tags(self, values: tuple) -> tuple[str, TagOptions, OutputOptions]:
        (tag_list, categories, only_listed, sort, rating, rating_t, artist, artist_t, include, exclude,
         spaces, escape, output, output_dir, repeats, kohya_name, overwrite) = values  # fmt: skip
        tags = TagOptions(
            categories=tuple(categories or ()), keep_only_listed=bool(only_listed), sort_by_count=bool(sort),
            prepend_rating=bool(rating), rating_template=rating_t or "{rating}", prepend_artist=bool(artist),
            artist_template=artist_t or "by {artist}", include=parse_tag_field(include),
            exclude=parse_tag_field(exclude), underscores_to_spaces=bool(spaces), escape_brackets=bool(escape),
        )  # fmt: skip
        out = OutputOptions(
            mode=output or "sidecar", folder=Path(output_dir.strip()) if (output_dir or "").strip() else None,
            kohya_repeats=int(repeats or 10), kohya_name=kohya_name or "subject", overwrite=bool(overwrite),
        )  # fmt: skip
        return (tag_list or "").strip(), tags, out

    def _tag_cache(self) -> Path:
        return Path(self.host.models_dir) / "booru-tag-lists"

    # -- handlers -------------------------------------------------------------------------
    def _fetch(self, job_id, query, folder, limit, types, max_mb, size, workers, write_captions, *rest):
        def make() -> Job:
            connection = self._connection(*rest[:5])
            tag_list, tags, out = self._tags(rest[5:])
            target = (folder or "").strip() or str(default_folder(self.host.output_dir, query or ""))
            options = FetchOptions(
                query=query or "", folder=Path(target).expanduser(), limit=int(limit or 0), connection=connection,
                types=tuple(types or ()), max_mb=float(max_mb or 0), sample=size == "sample",
                workers=int(workers or 3), write_captions=bool(write_captions), tag_options=tags, output=out,
                tag_list=tag_list, cache_dir=self._tag_cache(),
            )  # fmt: skip
            return fetch_job(options)

        yield from self._start(job_id, make)

    def _caption(self, job_id, folder, *rest):
        def make() -> Job:
            if not (folder or "").strip():
                raise EmbedStudioError("Enter the folder of booru images (md5 file names) to caption.")
            tag_list, tags, out = self._tags(rest[5:])
            options = CaptionOptions(
                folder=Path(folder.strip()).expanduser(), connection=self._connection(*rest[:5]), tag_options=tags,
                output=out, tag_list=tag_list, cache_dir=self._tag_cache(),
            )  # fmt: skip
            return caption_job(options)

        yield from self._start(job_id, make)

    def _start(self, job_id, make):
        running = self.host.jobs.get(job_id) if job_id else None
        if running is not None and running.status().active:
            yield job_id, "A fetch is still running: cancel it or wait for it to end.", gr.update(), gr.update()
            return
        try:
            job = make()
        except (EmbedStudioError, ValueError) as e:
            yield job_id, f"**Cannot start:** {e}", gr.update(), gr.update()
            return
        job = self.host.submit(job)
        yield from follow_job(job, self._renderer(job))

    @staticmethod
    def _renderer(job: Job):
        shown: list[str] = []

        def render(status: JobStatus) -> tuple[Any, ...]:
            line = status_line(status, unit="files")
            if "bytes" in status.stats:
                line += f" · {status.stats.get('posts', 0)} posts · {human_size(status.stats['bytes'])}"
            if status.error:
                line = f"**{status.state}**: {status.error}"
            elif not status.active:
                line = f"**{status.state}** · {line}"
            summary = status.stats.get("summary", "")
            # Only send the gallery when new images arrived: each send copies the files for the browser.
            images = status.images[-GALLERY_SIZE:]
            gallery: Any = gr.update()
            if images != shown:
                shown[:] = images
                gallery = list(images)
            return job.id, line, summary, gallery

        return render

    def _hand_on(self, job_id: str | None, tagger_folder: str, *later: str) -> tuple[Any, ...]:
        folder, action = self._hand_to_tagger(job_id, tagger_folder)
        if not isinstance(folder, str):
            return (folder, action, *(gr.update() for _ in later))
        return (folder, action, *(gr.update() if (box or "").strip() else folder for box in later))

    def _hand_to_tagger(self, job_id: str | None, tagger_folder: str) -> tuple[Any, Any]:
        job = self.host.jobs.get(job_id) if job_id else None
        summary = getattr(job, "result", None)
        if not isinstance(summary, FetchSummary) or not summary.folder:
            return gr.update(), gr.update()
        current = (tagger_folder or "").strip()
        if current and Path(current).expanduser() != Path(summary.folder):
            return gr.update(), gr.update()  # the user is tagging another folder: leave it
        return summary.folder, (MERGE if summary.captions or summary.captions_kept else gr.update())

    def _cancel(self, job_id):
        job = self.host.jobs.get(job_id) if job_id else None
        if job is None or not job.status().active:
            return "Nothing is running."
        job.cancel()
        return "Cancelling: the files in flight are finished or discarded, nothing half-written is kept…"


TAB = BooruTab
