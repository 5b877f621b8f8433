"""The Dataset panel: prune tags across a dataset (table, filter, gallery, caption editor) and prepare images.

Built like the other panels, in blocks that each create their components, then wire them once every block
exists: the folder bar, the tag table, the tag edits, the image browser (Tags sub-tab) and the image tools
(Images sub-tab). Every edit answers with the same view (see DatasetTab.view).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from embed_studio.dataset import backups, dedupe, preprocess, summary, trash
from embed_studio.dataset.captions import parse_tag_list
from embed_studio.dataset.session import ALL, FILTERED, PAGE_SIZE, DatasetSession
from embed_studio.dataset.taglist import load_tag_list
from embed_studio.dataset.thumbs import thumbnail
from embed_studio.errors import DatasetError, EmbedStudioError
from embed_studio.jobs import Job
from embed_studio.progress import status_line
from embed_studio.ui.base import Tab
from embed_studio.ui.jobs_ui import follow_job

# Runs before the Python handler: asks the browser user before unsaved captions are thrown away.
# Works without javascript/es-dataset.js loaded (then the server refuses and says why).
CONFIRM_DISCARD_JS = "(...a) => (window.embedStudioConfirmDiscard ? window.embedStudioConfirmDiscard(a) : a)"

# An image operation's work, given a progress callback(done, total, name).
Work = Callable[[Callable[[int, int, str], None]], Any]


def _error(e: Exception | str) -> str:
    return f"⚠️ {e}"


def _table_info(shown: int, total: int) -> str:
    return f"{total} tags" + (f" (showing {shown}; search to narrow)" if total > shown else "")


def append_tags(current: str, *new: Any) -> str:
    """The selected-tags box with more tags added, each once, in order."""
    tags = parse_tag_list(current)
    for value in new:
        tags += parse_tag_list(value if isinstance(value, (list, tuple)) else [value] if value else [])
    return ", ".join(dict.fromkeys(tags))


def finish_last(text: str, picked: str) -> str:
    """The box's text with its last comma-separated part replaced by the picked completion."""
    done = [t.strip() for t in (text or "").split(",")[:-1] if t.strip()]
    return ", ".join([*done, picked])


def render(s: DatasetSession, search: str = "", sort: str = "count", message: str = "") -> list[Any]:
    """The view's values (see DatasetTab.view) for a session."""
    if s.captions is None:
        return [s, message or s.status(), s.dirty_html(), [], "", [], ""]
    rows, total = s.table(search, sort)
    info = _table_info(len(rows), total)
    page = f"page {s.page + 1} / {s.page_count} · {len(s.filtered())} images"
    status = s.status() + (f"\n\n{message}" if message else "")
    return [s, status, s.dirty_html(), rows, info, s.gallery(), page]


def guard(fn: Callable[..., Any]) -> Callable[..., list[Any]]:
    """Wrap a handler (session, *rest) -> message as (session, search, sort, *rest) -> view, with a user error
    shown in the status line."""

    def handler(s: DatasetSession, search: str, sort: str, *rest: Any) -> list[Any]:
        try:
            message = fn(s, *rest) or ""
        except EmbedStudioError as e:
            out = render(s, search, sort) if s.captions else [s, s.status(), s.dirty_html(), [], "", [], ""]
            out[1] = f"{out[1]}\n\n{_error(e)}"
            return out
        return render(s, search, sort, message)

    return handler


def edit_op(action: Callable[..., Any]) -> Callable[..., list[Any]]:
    """A caption edit (session, *args) -> Edit, as a guarded handler that says what changed."""

    def run(s: DatasetSession, *args: Any) -> str:
        s.require()
        edit = s.edited(action(s, *args))
        if edit is None:
            return "Nothing to undo/redo."
        if not edit.changes:
            return f"{edit.label}: no caption changed."
        return f"{edit.label}: {edit.image_count} caption(s) changed (not saved yet)."

    return guard(run)


class Block:
    """One part of the panel: create_ui() inside the panel's layout, set_callbacks(panel) once all exist."""

    def create_ui(self) -> None:
        raise NotImplementedError

    def set_callbacks(self, panel: DatasetTab) -> None:
        raise NotImplementedError


# -- the folder bar: open, status, unsaved marker, undo/redo/save/restore --------------------------------
class FolderBar(Block):
    def create_ui(self) -> None:
        with gr.Row(elem_id="es-dataset-open-row"):
            self.folder = gr.Textbox(
                label="Dataset folder", placeholder="/path/to/images", scale=4, elem_id="es-dataset-folder"
            )
            self.filename_tags = gr.Checkbox(label="Tags in file names when no .txt", value=True, scale=1)
            self.open_btn = gr.Button("Open", variant="primary", scale=0, elem_id="es-dataset-open")
        with gr.Row():
            self.status = gr.Markdown("No dataset open.", elem_id="es-dataset-status")
            self.discard = gr.Checkbox(
                label="Discard unsaved changes on open/restore", value=False, elem_id="es-dataset-discard", scale=0
            )
        self.dirty = gr.HTML(DatasetSession().dirty_html(), elem_id="es-dataset-dirty")
        with gr.Row():
            self.undo_btn = gr.Button("↶ Undo", elem_id="es-dataset-undo", scale=0)
            self.redo_btn = gr.Button("↷ Redo", elem_id="es-dataset-redo", scale=0)
            self.save_btn = gr.Button("💾 Save", variant="primary", elem_id="es-dataset-save", scale=0)
            self.restore_btn = gr.Button("Restore last backup", elem_id="es-dataset-restore", scale=0)
            # The next step, once a dataset is open: save the edits (with a backup) and create the embedding.
            self.next_btn = gr.Button(
                "Save & train →", variant="primary", visible=False, elem_id="es-dataset-next", scale=0
            )

    def set_callbacks(self, panel: DatasetTab) -> None:
        view, table_in = panel.view, panel.table_in
        for event in (self.open_btn.click, self.folder.submit):
            panel.offer_next(
                event(guard(self._open), inputs=self.open_inputs(panel), outputs=view, _js=CONFIRM_DISCARD_JS)
            )
        self.undo_btn.click(edit_op(lambda s: s.require().undo()), inputs=table_in, outputs=view)
        self.redo_btn.click(edit_op(lambda s: s.require().redo()), inputs=table_in, outputs=view)
        self.save_btn.click(guard(self._save), inputs=table_in, outputs=view)
        self.restore_btn.click(
            guard(self._restore), inputs=[*table_in, self.discard], outputs=view, _js=CONFIRM_DISCARD_JS
        )

    def open_inputs(self, panel: DatasetTab) -> list[Any]:
        return [*panel.table_in, self.folder, self.filename_tags, self.discard]

    @staticmethod
    def _open(s: DatasetSession, folder: str, filename_tags: bool, discard: bool) -> str:
        ds = s.open(folder, filename_tags=filename_tags, discard=discard)
        empty = sum(1 for i in range(len(ds)) if not ds.tags_of(i))
        return f"Opened. {empty} image(s) without tags." if empty else "Opened."

    @staticmethod
    def _save(s: DatasetSession) -> str:
        result = s.require().save()
        if not result.count:
            return "Nothing to save."
        where = f" Replaced captions kept in backup `{result.backup.name}`." if result.backup else ""
        return f"Saved {result.count} caption(s).{where}"

    @staticmethod
    def _restore(s: DatasetSession, discard: bool) -> str:
        ds = s.require()
        if ds.dirty and not discard:
            raise DatasetError("Unsaved changes: Save them, or confirm discarding them, before restoring a backup.")
        result = backups.restore_backup(ds.folder)
        s.reload(discard=True)
        return (
            f"Restored {len(result.restored)} caption(s) from backup `{result.backup.name}`"
            f" (removed {len(result.removed)} new). The state before is in backup `{result.safety.name}`."
        )


# -- the tag table: search, sort, autocomplete, booru tag list ------------------------------------------
class TagTable(Block):
    def create_ui(self) -> None:
        with gr.Row():
            self.search = gr.Textbox(label="Search tags", placeholder="substring", elem_id="es-dataset-search")
            self.sort = gr.Radio(["count", "tag"], value="count", label="Sort by")
        self.complete_target = gr.State("tags")  # which box the suggestions complete
        self.complete = gr.Dropdown(
            label="Suggestions for the search, Add and Replace boxes (dataset, then booru tag list)",
            choices=[],
            interactive=True,  # only an output otherwise, which gradio would render disabled
            elem_id="es-dataset-complete",
        )
        self.table_info = gr.Markdown("")
        self.table = gr.Dataframe(
            headers=["tag", "images", "share %"],
            datatype=["str", "number", "number"],
            interactive=False,
            type="array",
            elem_id="es-dataset-table",
            wrap=True,
        )
        with gr.Accordion("Booru tag list for autocomplete", open=False):
            with gr.Row():
                self.taglist_path = gr.Textbox(label="Tag list (.csv as used by tag autocomplete, or .txt)", scale=4)
                self.taglist_btn = gr.Button("Load", scale=0)

    def set_callbacks(self, panel: DatasetTab) -> None:
        table_in, edits = panel.table_in, panel.edits
        # Typing in the search box redraws the table only, not the gallery.
        self.search.change(self._refresh, inputs=table_in, outputs=[self.table, self.table_info])
        self.sort.change(self._refresh, inputs=table_in, outputs=[self.table, self.table_info])
        for box, target in ((self.search, "tags"), (edits.new_tag, "new"), (edits.replacement, "replacement")):
            box.change(
                self._completions(target), inputs=[panel.session, box], outputs=[self.complete, self.complete_target]
            )
        self.complete.select(
            self._complete_pick,
            inputs=[self.complete_target, edits.tags, edits.new_tag, edits.replacement],
            outputs=[edits.tags, edits.new_tag, edits.replacement],
        )
        self.table.select(self._table_click, inputs=[edits.tags, self.table], outputs=[edits.tags])
        self.taglist_btn.click(guard(self._load_taglist), inputs=[*table_in, self.taglist_path], outputs=panel.view)

    @staticmethod
    def _refresh(s: DatasetSession, search: str, sort: str) -> tuple[list[list], str]:
        if s.captions is None:
            return [], ""
        rows, total = s.table(search, sort)
        return rows, _table_info(len(rows), total)

    @staticmethod
    def _completions(target: str) -> Callable[[DatasetSession, str], tuple[dict, str]]:
        """Complete the last comma-separated part typed in a box; remember which box it was."""

        def run(s: DatasetSession, text: str) -> tuple[dict, str]:
            last = (text or "").split(",")[-1].strip()
            if s.captions is None or not last:
                return gr.update(choices=[], value=None), target
            return gr.update(choices=s.captions.complete(last, s.booru_tags), value=None), target

        return run

    @staticmethod
    def _complete_pick(target: str, tags: str, new: str, replacement: str, evt: gr.SelectData) -> tuple:
        # A pick from the search goes to the selected tags; in Add/Replace it finishes the word typed.
        if target == "new":
            return gr.update(), finish_last(new, evt.value), gr.update()
        if target == "replacement":
            return gr.update(), gr.update(), finish_last(replacement, evt.value)
        return append_tags(tags, evt.value), gr.update(), gr.update()

    @staticmethod
    def _table_click(current: str, rows: list[list], evt: gr.SelectData) -> str:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if rows is None or not 0 <= row < len(rows):
            return current
        return append_tags(current, rows[row][0])

    @staticmethod
    def _load_taglist(s: DatasetSession, path: str) -> str:
        s.booru_tags = load_tag_list(path)
        return f"Loaded {len(s.booru_tags)} booru tags for autocomplete."


# -- the tag edits: selected tags, delete/front/replace/add, character-tag suggestions --------------------
class TagEdits(Block):
    def create_ui(self) -> None:
        self.tags = gr.Textbox(label="Selected tags (click table rows to add)", elem_id="es-dataset-selected", lines=2)
        self.scope = gr.Radio([ALL, FILTERED], value=ALL, label="Apply to", elem_id="es-dataset-scope")
        with gr.Row():
            self.delete_btn = gr.Button("Delete selected tags", variant="stop", elem_id="es-dataset-delete")
            self.front_btn = gr.Button("Move to front", elem_id="es-dataset-front")
            self.normalize_btn = gr.Button("Normalize spelling", elem_id="es-dataset-normalize")
        with gr.Row():
            self.replacement = gr.Textbox(
                label="Replace selected with", placeholder="nsfw", elem_id="es-dataset-replacement"
            )
            self.replace_btn = gr.Button("Replace", elem_id="es-dataset-replace", scale=0)
        with gr.Row():
            self.new_tag = gr.Textbox(label="Add tag(s)", elem_id="es-dataset-new-tag")
            self.position = gr.Textbox(
                label="at position", value="end", placeholder="start, end or 0-based number", scale=0
            )
            self.add_btn = gr.Button("Add", elem_id="es-dataset-add", scale=0)
        with gr.Accordion("Suggest character tags", open=True):
            with gr.Row():
                self.threshold = gr.Slider(0.1, 1.0, value=0.5, step=0.05, label="On at least this share of images")
                self.suggest_btn = gr.Button("Suggest", elem_id="es-dataset-suggest", scale=0)
            self.candidates = gr.CheckboxGroup(
                label="Candidates to prune (you decide)", choices=[], elem_id="es-dataset-candidates"
            )
            self.generic_info = gr.Markdown("")
            with gr.Row():
                self.use_candidates = gr.Button("Select checked", scale=0)
                self.delete_candidates = gr.Button(
                    "Delete checked", variant="stop", scale=0, elem_id="es-dataset-delete-candidates"
                )

    def set_callbacks(self, panel: DatasetTab) -> None:
        view, table_in = panel.view, panel.table_in
        scoped = [*table_in, self.tags, self.scope]
        self.delete_btn.click(
            edit_op(lambda s, tags, scope: s.require().delete_tags(tags, s.scope(scope))), inputs=scoped, outputs=view
        )
        self.front_btn.click(
            edit_op(lambda s, tags, scope: s.require().move_to_front(tags, s.scope(scope))), inputs=scoped, outputs=view
        )
        self.replace_btn.click(
            edit_op(lambda s, tags, scope, new: s.require().replace_tags(tags, new, s.scope(scope))),
            inputs=[*scoped, self.replacement],
            outputs=view,
        )
        self.add_btn.click(
            edit_op(lambda s, scope, new, pos: s.require().add_tags(new, (pos or "end").strip(), s.scope(scope))),
            inputs=[*table_in, self.scope, self.new_tag, self.position],
            outputs=view,
        )
        # One spelling per tag in every caption; like any edit it waits for Save (backup) and Undo undoes it.
        self.normalize_btn.click(
            edit_op(lambda s, scope: s.require().normalize(indices=s.scope(scope))),
            inputs=[*table_in, self.scope],
            outputs=view,
        )
        self.suggest_after(self.suggest_btn.click, panel)
        self.use_candidates.click(append_tags, inputs=[self.tags, self.candidates], outputs=[self.tags])
        # The checked suggestions go in one click; the list is then suggested again from what is left.
        deleted = self.delete_candidates.click(
            edit_op(lambda s, picked, scope: s.require().delete_tags(picked, s.scope(scope))),
            inputs=[*table_in, self.candidates, self.scope],
            outputs=view,
        )
        self.suggest_after(deleted.then, panel)

    def suggest_after(self, trigger: Any, panel: DatasetTab) -> Any:
        """Suggest character tags on `trigger` (a click, or the end of another event), the candidates checked."""
        inputs = [panel.session, self.threshold, self.scope]
        return trigger(self._suggest, inputs=inputs, outputs=[self.candidates, self.generic_info])

    @staticmethod
    def _suggest(s: DatasetSession, threshold: float, scope: str) -> tuple[dict, str]:
        if s.captions is None:
            return gr.update(choices=[], value=[]), "Open a dataset folder first."
        sug = s.captions.suggest_character_tags(float(threshold), s.scope(scope))
        generic = ", ".join(f"{r.tag} ({r.share:.0%})" for r in sug.generic)
        shares = ", ".join(f"{r.tag} {r.share:.0%}" for r in sug.candidates)
        text = f"Shares: {shares}" if shares else f"No tag is on {sug.threshold:.0%} of the images."
        if generic:
            text += f"\n\nFrequent but generic (usually keep): {generic}"
        # Checked from the start: pruning what defines the character is the usual step (the guides); the user
        # unticks what to keep.
        tags = [r.tag for r in sug.candidates]
        return gr.update(choices=tags, value=tags), text


# -- the image browser: filter, pages, gallery, one image's caption -----------------------------------------
class ImageBrowser(Block):
    def create_ui(self) -> None:
        with gr.Row():
            self.has = gr.Textbox(label="Filter: has tags", placeholder="tag, tag", elem_id="es-dataset-has")
            self.lacks = gr.Textbox(label="Filter: lacks tags", elem_id="es-dataset-lacks")
            self.text_filter = gr.Textbox(label="Filter: name/caption contains")
            self.match_any = gr.Checkbox(label="has ANY (not all)", value=False)
            self.filter_btn = gr.Button("Filter", scale=0, elem_id="es-dataset-filter")
        with gr.Row():
            self.prev_btn = gr.Button("◀", scale=0)
            self.page_info = gr.Markdown("", elem_id="es-dataset-page")
            self.next_btn = gr.Button("▶", scale=0)
        self.gallery = gr.Gallery(
            label=f"Images (page of {PAGE_SIZE})",
            columns=8,
            height="auto",
            allow_preview=False,
            elem_id="es-dataset-gallery",
        )
        with gr.Row():
            self.caption_image = gr.Image(
                label="Selected image", type="filepath", interactive=False, height=256, scale=1
            )
            with gr.Column(scale=3):
                self.caption_name = gr.Markdown("Click an image to edit its caption.")
                self.caption = gr.Textbox(label="Caption", lines=4, elem_id="es-dataset-caption")
                self.caption_btn = gr.Button("Apply caption", elem_id="es-dataset-caption-apply", scale=0)

    def set_callbacks(self, panel: DatasetTab) -> None:
        view, table_in = panel.view, panel.table_in
        filter_in = [*table_in, self.has, self.lacks, self.text_filter, self.match_any]
        for event in (self.filter_btn.click, self.has.submit, self.lacks.submit):
            event(guard(self._apply_filter), inputs=filter_in, outputs=view)
        self.prev_btn.click(guard(self._turn(-1)), inputs=table_in, outputs=view)
        self.next_btn.click(guard(self._turn(1)), inputs=table_in, outputs=view)
        self.gallery.select(
            self._pick, inputs=[panel.session], outputs=[self.caption_image, self.caption_name, self.caption]
        )
        self.caption_btn.click(edit_op(self._set_caption), inputs=[*table_in, self.caption], outputs=view)

    @staticmethod
    def _apply_filter(s: DatasetSession, has: str, lacks: str, text: str, match_any: bool) -> str:
        s.require()
        s.set_filter(has, lacks, match_any, text)
        return ""

    @staticmethod
    def _turn(delta: int) -> Callable[[DatasetSession], str]:
        def run(s: DatasetSession) -> str:
            s.require()
            s.turn(delta)
            return ""

        return run

    @staticmethod
    def _pick(s: DatasetSession, evt: gr.SelectData) -> tuple[Any, str, str]:
        try:
            i = s.select_on_page(int(evt.index))
        except EmbedStudioError as e:
            return None, _error(e), ""
        ds = s.require()
        return str(thumbnail(ds.images[i], 512)), f"`{ds.images[i].name}` ({ds.sources[i]})", ds.caption_text(i)

    @staticmethod
    def _set_caption(s: DatasetSession, text: str) -> Any:
        if s.selected is None:
            raise DatasetError("Click an image in the gallery first.")
        return s.require().set_caption(s.selected, text)


# -- the image tools (Images sub-tab): operations as jobs, duplicates, restore, summary ------------------
class ImageTools(Block):
    def __init__(self, panel: DatasetTab):
        self.panel = panel

    def create_ui(self) -> None:
        gr.Markdown(
            "Image operations change files at once (not on Save): replaced and removed files go to "
            "`.embed-studio/trash` in the dataset, and *Restore last image operation* brings them back."
        )
        self.img_scope = gr.Radio([ALL, FILTERED], value=ALL, label="Apply to")
        with gr.Row():
            self.max_side = gr.Number(label="Downscale: longest side", value=1024, precision=0)
            self.downscale_btn = gr.Button("Downscale larger images", elem_id="es-dataset-downscale")
        with gr.Row():
            self.fmt = gr.Radio(["png", "jpg"], value="png", label="Convert GIF/WebP/CMYK/16-bit/transparent to")
            self.background = gr.ColorPicker(value="#ffffff", label="Transparency background")
            self.convert_btn = gr.Button("Convert", elem_id="es-dataset-convert")
        with gr.Row():
            self.flip_btn = gr.Button("Add flipped copies", elem_id="es-dataset-flip")
            self.min_ratio = gr.Number(label="Split: images at least this long/wide", value=2.0)
            self.overlap = gr.Slider(0.0, 0.5, value=0.2, step=0.05, label="Overlap")
            self.split_btn = gr.Button("Split long images", elem_id="es-dataset-split")
        with gr.Row():
            self.dup_threshold = gr.Slider(0, 20, value=6, step=1, label="Near-duplicate threshold (hash bits)")
            self.find_dups_btn = gr.Button("Find duplicates", elem_id="es-dataset-find-dups")
            self.remove_dups_btn = gr.Button(
                "Move duplicates to trash", variant="stop", elem_id="es-dataset-remove-dups"
            )
        self.dups_info = gr.Markdown("")
        self.dups_gallery = gr.Gallery(
            label="Duplicates (kept image first in each group)", columns=8, height="auto", allow_preview=False
        )
        self.restore_images_btn = gr.Button("Restore last image operation", elem_id="es-dataset-restore-images")
        with gr.Row():
            self.train_w = gr.Number(label="Training width", value=512, precision=0)
            self.train_h = gr.Number(label="Training height", value=512, precision=0)
            self.summary_btn = gr.Button("Summary", elem_id="es-dataset-summary")
        self.image_status = gr.Markdown("", elem_id="es-dataset-image-status")
        self.summary_md = gr.Markdown("", elem_id="es-dataset-summary-md")

    def set_callbacks(self, panel: DatasetTab) -> None:
        view, table_in = panel.view, panel.table_in
        outputs = [*view, self.image_status]
        scoped_in = [*table_in, self.img_scope]
        self.downscale_btn.click(
            self._job_handler(self._downscale, "downscale"), inputs=[*scoped_in, self.max_side], outputs=outputs
        )
        self.convert_btn.click(
            self._job_handler(self._convert, "convert"), inputs=[*scoped_in, self.fmt, self.background], outputs=outputs
        )
        self.flip_btn.click(self._job_handler(self._flip, "flip"), inputs=scoped_in, outputs=outputs)
        self.split_btn.click(
            self._job_handler(self._split, "split"), inputs=[*scoped_in, self.min_ratio, self.overlap], outputs=outputs
        )
        self.find_dups_btn.click(
            self._find_dups,
            inputs=[panel.session, self.img_scope, self.dup_threshold],
            outputs=[panel.session, self.dups_info, self.dups_gallery],
        )
        self.remove_dups_btn.click(guard(self._remove_dups), inputs=table_in, outputs=view)
        self.restore_images_btn.click(guard(self._restore_images), inputs=table_in, outputs=view)
        self.summary_btn.click(
            self._show_summary, inputs=[panel.session, self.train_w, self.train_h], outputs=[self.summary_md]
        )

    # The operations: (folder, images or None for all, *form values) -> the work to run as a job.
    @staticmethod
    def _downscale(folder: Path, images: list[Path] | None, side: float) -> Work:
        return lambda progress: preprocess.downscale(folder, int(side), images=images, progress=progress)

    @staticmethod
    def _convert(folder: Path, images: list[Path] | None, fmt: str, background: str) -> Work:
        return lambda progress: preprocess.convert(
            folder, fmt, background=background or "#ffffff", images=images, progress=progress
        )

    @staticmethod
    def _flip(folder: Path, images: list[Path] | None) -> Work:
        return lambda progress: preprocess.flip(folder, images=images, progress=progress)

    @staticmethod
    def _split(folder: Path, images: list[Path] | None, ratio: float, overlap: float) -> Work:
        return lambda progress: preprocess.split(
            folder, min_ratio=float(ratio), overlap=float(overlap), images=images, progress=progress
        )

    def _job_handler(self, make: Callable[..., Work], label: str) -> Callable[..., Iterator[list[Any]]]:
        """A generator handler: run the operation as a Job, stream its progress, then reload."""
        view_size = len(self.panel.view)

        def handler(s: DatasetSession, search: str, sort: str, scope: str, *args: Any) -> Iterator[list[Any]]:
            try:
                ds = s.require()
                if ds.dirty:
                    raise DatasetError(
                        "Save (or undo) your caption changes first: an image operation reloads the dataset."
                    )
                images = None if s.scope(scope) is None else [ds.images[i] for i in s.scope(scope)]
                work = make(ds.folder, images, *args)
            except EmbedStudioError as e:
                yield [*[gr.update()] * view_size, _error(e)]
                return

            def run(ctx: Any) -> Any:
                def progress(done: int, total: int, name: str) -> None:
                    ctx.check_cancelled()
                    ctx.progress(done, total, name, label=label)

                return work(progress)

            job = self.panel.host.submit(Job(f"dataset-{label}", run))
            for status in follow_job(job, status_line):
                yield [*[gr.update()] * view_size, status]
            message = job.status().error and _error(job.status().error) or self._describe(job.result)
            try:
                s.reload(discard=True)
            except EmbedStudioError as e:
                message += f"\n\n{_error(e)}"
            yield [*render(s, search, sort), message]

        return handler

    @staticmethod
    def _describe(result: Any) -> str:
        if isinstance(result, preprocess.OpResult):
            lines = [result.summary()] + [f"- `{p.name}`: {what}" for p, what in result.items[:30]]
            lines += [f"- skipped `{p.name}`: {why}" for p, why in result.skipped[:10]]
            return "\n".join(lines)
        if isinstance(result, trash.TrashBatch):
            return f"Moved to trash `{result.name}`: {len(result.moved)} file(s). Restore brings them back."
        return str(result or "")

    def _find_dups(self, s: DatasetSession, scope: str, threshold: float) -> Iterator[tuple]:
        try:
            ds = s.require()
            images = None if s.scope(scope) is None else [ds.images[i] for i in s.scope(scope)]
        except EmbedStudioError as e:
            yield s, _error(e), []
            return

        def run(ctx: Any) -> dedupe.DedupeReport:
            def progress(done: int, total: int, name: str) -> None:
                ctx.check_cancelled()
                ctx.progress(done, total, name, label="hash")

            return dedupe.find_duplicates(ds.folder, int(threshold), images=images, progress=progress)

        job = self.panel.host.submit(Job("dataset-dedupe", run))
        for status in follow_job(job, status_line):
            yield s, status, gr.update()
        if job.status().error:
            yield s, _error(job.status().error), []
            return
        report: dedupe.DedupeReport = job.result
        s.dedupe = report
        lines = [f"**{report.duplicate_count} duplicate(s)** in {len(report.groups)} group(s); nothing moved yet."]
        shown: list[tuple[str, str]] = []
        for g in report.groups:
            found = ", ".join(
                f"`{d.path.name}` ({'identical' if d.exact else f'distance {d.distance}'})" for d in g.duplicates
            )
            lines.append(f"- keep `{g.keep.name}`: {found}")
            if len(shown) < 96:
                shown.append((str(thumbnail(g.keep)), f"keep {g.keep.name}"))
                shown += [(str(thumbnail(d.path)), f"dup {d.path.name}") for d in g.duplicates]
        yield s, "\n".join(lines[:200]), shown

    @staticmethod
    def _remove_dups(s: DatasetSession) -> str:
        ds = s.require()
        if ds.dirty:
            raise DatasetError("Save (or undo) your caption changes first: removing images reloads the dataset.")
        if not s.dedupe or not s.dedupe.duplicate_count:
            raise DatasetError("Find duplicates first, check the preview, then move them.")
        batch = dedupe.remove_duplicates(ds.folder, s.dedupe)
        s.dedupe = None
        s.reload(discard=True)
        return f"Moved {len(batch.moved)} file(s) to trash `{batch.name}`; *Restore last image operation* brings them back."

    @staticmethod
    def _restore_images(s: DatasetSession) -> str:
        ds = s.require()
        if ds.dirty:
            raise DatasetError("Save (or undo) your caption changes first: restoring images reloads the dataset.")
        batch = trash.restore_trash(ds.folder)
        s.reload(discard=True)
        return (
            f"Restored `{batch.name}` ({batch.label}): {len(batch.moved)} file(s) back, {len(batch.created)} removed."
        )

    def _show_summary(self, s: DatasetSession, w: float, h: float) -> Iterator[str]:
        try:
            folder = s.require().folder
        except EmbedStudioError as e:
            yield _error(e)
            return
        size = (int(w or 512), int(h or 512))

        def run(ctx: Any) -> Any:
            return summary.summarize(folder, size, progress=lambda d, t, n: ctx.progress(d, t, n, label="image"))

        job = self.panel.host.submit(Job("dataset-summary", run))
        yield from follow_job(job, status_line)
        yield _error(job.status().error) if job.status().error else job.result.as_markdown()


class DatasetTab(Tab):
    title = "Dataset"
    elem_id = "es-dataset"

    def create_ui(self) -> None:
        self.session = gr.State(DatasetSession)
        self.bar = FolderBar()
        self.tag_table = TagTable()
        self.edits = TagEdits()
        self.browser = ImageBrowser()
        self.tools = ImageTools(self)
        self.bar.create_ui()
        with gr.Tabs(elem_id="es-dataset-tabs"):
            with gr.Tab("Tags", elem_id="es-dataset-tags-tab"):
                with gr.Row():
                    with gr.Column(scale=2):
                        self.tag_table.create_ui()
                    with gr.Column(scale=3):
                        self.edits.create_ui()
                self.browser.create_ui()
            with gr.Tab("Images", elem_id="es-dataset-images-tab"):
                self.tools.create_ui()
        self.folder = self.bar.folder  # what the other panels read and fill

    @property
    def view(self) -> list[Any]:
        """Components every edit refreshes, in the order render() returns them."""
        return [
            self.session, self.bar.status, self.bar.dirty, self.tag_table.table, self.tag_table.table_info,
            self.browser.gallery, self.browser.page_info,
        ]  # fmt: skip

    @property
    def table_in(self) -> list[Any]:
        """The inputs every guarded handler starts with: the session and how the table is shown."""
        return [self.session, self.tag_table.search, self.tag_table.sort]

    def set_callbacks(self, tabs: dict[str, Tab]) -> None:
        self.train = tabs.get("es-train") if self.panels is not None else None
        if not hasattr(self.train, "create"):
            self.train = None  # no Train panel (no model host): no next step to offer
        for block in (self.bar, self.tag_table, self.edits, self.browser, self.tools):
            block.set_callbacks(self)
        self._follow_other_tabs(tabs)
        self._wire_next_step()

    def open_after(self, event: Any) -> Any:
        """Open the dataset in the folder box once `event` is done (the Tagger's next step), with its
        character-tag suggestions checked: one click deletes them."""
        opened = event.then(
            guard(FolderBar._open), inputs=self.bar.open_inputs(self), outputs=self.view, _js=CONFIRM_DISCARD_JS
        )
        return self.edits.suggest_after(self.offer_next(opened).then, self)

    def offer_next(self, opened: Any) -> Any:
        """After an open: 'Save & train →' shows when a dataset is open and there is a Train panel."""
        return opened.then(self._next_visible, inputs=[self.session], outputs=[self.bar.next_btn], queue=False)

    def _next_visible(self, s: DatasetSession) -> Any:
        return gr.update(visible=self.train is not None and s.captions is not None)

    def _wire_next_step(self) -> None:
        if self.train is None:
            return
        saved = self.bar.next_btn.click(guard(FolderBar._save), inputs=self.table_in, outputs=self.view)
        saved.then(
            self._go_to_train, inputs=[self.session], outputs=[self.train.dataset, self.panels, self.train.subtabs],
            queue=False,
        )  # fmt: skip

    def _go_to_train(self, s: DatasetSession) -> tuple[Any, Any, Any]:
        """The Train panel's Create embedding form, on this dataset; nowhere while edits are unsaved (the save
        failed and said why)."""
        if s.captions is None or s.captions.dirty:
            return gr.update(), gr.update(), gr.update()
        return str(s.captions.folder), self.show_panel("es-train"), self.train.show_create()

    def _follow_other_tabs(self, tabs: dict[str, Tab]) -> None:
        """The folder typed in the tagger (the step before pruning) becomes this panel's folder."""
        source = getattr(tabs.get("es-tagger"), "folder", None)
        if isinstance(source, gr.Textbox):
            source.blur(lambda src, cur: src.strip() or cur, inputs=[source, self.folder], outputs=[self.folder])


TAB = DatasetTab
