"""The fetch job: search a booru, download a few files at a time, caption them, summarise."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embed_studio.booru.captions import CaptionSummary, OutputOptions, caption_folder, write_output
from embed_studio.booru.download import DOWNLOADED, FAILED, DownloadResult, download_post
from embed_studio.booru.post import Booru, Post
from embed_studio.booru.sites import open_booru
from embed_studio.booru.tagfilter import TagList, TagOptions, format_caption, resolve_tag_list
from embed_studio.dataset.imageio import is_image_file
from embed_studio.errors import Cancelled, EmbedStudioError, NetworkError, UserInputError
from embed_studio.jobs import Job, JobContext

DEFAULT_TYPES = ("jpg", "png", "webp")


@dataclass
class ConnectionOptions:
    """Which booru and how politely to talk to it."""

    site: str = "e621"
    base_url: str = ""  # empty: the site's public server
    username: str = ""
    api_key: str = ""
    min_interval: float = 1.0  # seconds between API requests (at least client.MIN_INTERVAL)
    backoff: float = 2.0
    max_retries: int = 4
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def open(self, cancelled: Callable[[], bool] | None = None) -> Booru:
        return open_booru(
            self.site, base_url=self.base_url, username=self.username, api_key=self.api_key, cancelled=cancelled,
            min_interval=self.min_interval, backoff=self.backoff, max_retries=self.max_retries,
            clock=self.clock, sleep=self.sleep,
        )  # fmt: skip


@dataclass
class FetchOptions:
    query: str
    folder: Path
    limit: int = 150
    connection: ConnectionOptions = field(default_factory=ConnectionOptions)
    types: tuple[str, ...] = DEFAULT_TYPES  # file extensions to keep; empty: all
    max_mb: float = 0.0  # 0: no size limit
    sample: bool = False  # the booru's downscaled sample instead of the original
    workers: int = 3
    write_captions: bool = True
    tag_options: TagOptions = field(default_factory=TagOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    tag_list: str = ""  # path or URL of a model tag CSV; empty: keep the booru's tags
    cache_dir: Path | None = None  # where a downloaded tag list is kept

    def validate(self) -> None:
        if not self.query.strip():
            raise UserInputError("Enter a search query, e.g. `zangoose -female score:>0`.")
        if int(self.limit) < 1:
            raise UserInputError("The limit must be at least 1 image.")
        if not str(self.folder).strip():
            raise UserInputError("Choose the folder the images go into.")
        if not 1 <= int(self.workers) <= 8:
            raise UserInputError("Use 1 to 8 parallel downloads; boorus ask clients to stay gentle.")
        if self.max_mb < 0:
            raise UserInputError("The maximum file size can't be negative (0 means no limit).")


@dataclass
class FetchSummary:
    site: str = ""
    query: str = ""
    folder: str = ""
    pages: int = 0
    posts_seen: int = 0
    downloaded: int = 0
    present: int = 0
    bytes: int = 0
    deleted: int = 0  # no file URL: deleted
    hidden: int = 0  # no file URL: hidden from this user (login needed)
    filtered: int = 0  # wrong file type or too large
    unsafe: list[str] = field(default_factory=list)  # posts whose md5/ext cannot be a file name
    failed: list[str] = field(default_factory=list)
    captions: int = 0
    captions_kept: int = 0
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False
    files: list[str] = field(default_factory=list)
    finished: bool = False  # the run reached its end (not cancelled, not stopped by an error)
    error: str = ""  # what stopped the run

    def head(self) -> str:
        if self.cancelled:
            return "Cancelled"
        if self.error:
            return "Failed"
        if not self.finished:
            return "Fetching"
        problems = len(self.failed) + len(self.unsafe)
        return f"Finished with {problems} problem{'s' if problems != 1 else ''}" if problems else "Done"

    def text(self) -> str:
        head = self.head()
        lines = [
            f"{head}: {self.site} {self.query!r} → {self.folder}",
            f"{self.posts_seen} posts looked at on {self.pages} page{'s' if self.pages != 1 else ''}; "
            f"{self.downloaded} downloaded ({human_size(self.bytes)}), {self.present} already there, "
            f"{len(self.failed)} failed.",
        ]
        skipped = []
        if self.deleted:
            skipped.append(f"{self.deleted} deleted")
        if self.hidden:
            skipped.append(f"{self.hidden} hidden (no file URL; a login may show them)")
        if self.filtered:
            skipped.append(f"{self.filtered} of another file type or too large")
        if self.unsafe:
            skipped.append(f"{len(self.unsafe)} whose md5 or file type is not a safe file name")
        if skipped:
            lines.append("Skipped " + ", ".join(skipped) + ".")
        if self.captions or self.captions_kept:
            lines.append(f"{self.captions} captions written, {self.captions_kept} existing kept.")
        lines += [f"Skipped: {u}" for u in self.unsafe[:5]]
        if len(self.unsafe) > 5:
            lines.append(f"... and {len(self.unsafe) - 5} more skipped.")
        lines += [f"Failed: {f}" for f in self.failed[:5]]
        if len(self.failed) > 5:
            lines.append(f"... and {len(self.failed) - 5} more failures.")
        if self.error:
            lines.append(f"Stopped by: {self.error}")
        lines += self.notes
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def run_fetch(options: FetchOptions, ctx: JobContext) -> FetchSummary:
    """Search, download (resuming), caption; publish progress and the summary on `ctx`."""
    options.validate()
    folder = Path(options.folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    booru = options.connection.open(cancelled=lambda: ctx.cancelled)
    summary = FetchSummary(site=booru.site, query=options.query.strip(), folder=str(folder))
    tag_list = _tag_list(options, booru) if options.write_captions else None
    lock = threading.Lock()
    max_bytes = int(options.max_mb * 1024 * 1024)
    types = {t.lower().lstrip(".") for t in options.types}
    queued = 0
    searched = False  # the search has no more pages: `queued` is the whole count, not the limit

    def report(text: str = "") -> None:
        with lock:
            done = summary.downloaded + summary.present + len(summary.failed)
            ctx.progress(
                done, queued if searched or queued >= options.limit else options.limit, text or None,
                label="file", posts=summary.posts_seen, files=summary.downloaded, bytes=summary.bytes,
                summary=summary.text(),
            )  # fmt: skip

    def on_bytes(n: int) -> None:
        with lock:
            summary.bytes += n

    def fetch_one(post: Post) -> None:
        result = download_post(
            booru.client, post, folder, sample=options.sample, max_bytes=max_bytes,
            cancelled=lambda: ctx.cancelled, on_bytes=on_bytes,
        )  # fmt: skip
        _finish(result)

    def _finish(result: DownloadResult) -> None:
        caption_written = None
        if result.status != FAILED and options.write_captions:
            caption = format_caption(result.post, options.tag_options, tag_list)
            try:
                caption_written = write_output(result.path, caption, options.output) is not None
            except (EmbedStudioError, OSError) as e:
                # The image is there; only its caption is missing: fail this file, go on with the others.
                reason = str(e) if isinstance(e, EmbedStudioError) else (e.strerror or str(e))
                result = DownloadResult(
                    result.post, result.path, FAILED, error=f"caption of {result.path.name}: {reason}"
                )
        with lock:
            if result.status == FAILED:
                summary.failed.append(f"post {result.post.id}: {result.error}")
            elif result.status == DOWNLOADED:
                summary.downloaded += 1
            else:
                summary.present += 1
            if result.status != FAILED:
                summary.files.append(str(result.path))
            if caption_written is not None:
                summary.captions += caption_written
                summary.captions_kept += not caption_written
        if result.status == DOWNLOADED and is_image_file(result.path):
            ctx.add_image(str(result.path))
        report(f"{result.status} {result.path.name}")

    pool = ThreadPoolExecutor(max_workers=int(options.workers), thread_name_prefix="embed-studio-download")
    futures = []
    try:
        ctx.set_text(f"searching {booru.site} for {summary.query!r}")
        pages = booru.search(summary.query)
        while True:
            ctx.check_cancelled()
            try:
                page = next(pages, None)
            except NetworkError as e:
                if not futures:
                    raise
                # Keep what the earlier pages found: finish those downloads; the unfinished search is a failure.
                with lock:
                    summary.failed.append(f"the search stopped early: {e}")
                break
            if page is None:
                searched = True
                report(f"search done: {queued} files queued")
                break
            summary.pages += 1
            for post in page:
                if queued >= options.limit:
                    break
                with lock:
                    summary.posts_seen += 1
                    skip = _skip_reason(post, types, max_bytes, options.sample)
                    if skip == "deleted":
                        summary.deleted += 1
                    elif skip == "hidden":
                        summary.hidden += 1
                    elif skip == "unsafe":
                        summary.unsafe.append(f"post {post.id}: {post.problem}")
                    elif skip:
                        summary.filtered += 1
                if skip:
                    continue
                queued += 1
                futures.append(pool.submit(fetch_one, post))
            report(f"page {summary.pages}: {summary.posts_seen} posts, {queued} files queued")
            if queued >= options.limit:
                break
        for future in futures:
            future.result()
        ctx.check_cancelled()
    except Cancelled:
        summary.cancelled = True
        pool.shutdown(wait=True, cancel_futures=True)
        summary.notes.extend(booru.notes)
        report("cancelled")
        raise
    except BaseException as e:
        # The summary published so far must not read as a finished run.
        summary.error = str(e) or type(e).__name__
        pool.shutdown(wait=True, cancel_futures=True)
        summary.notes.extend(booru.notes)
        report("failed")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        booru.client.close()
    summary.notes.extend(booru.notes)
    if summary.posts_seen == 0:
        summary.notes.append("No posts matched the query. Check the spelling of the tags on the site itself.")
    summary.finished = True
    report("done")
    return summary


# atomic_writer's temporary for md5.ext is ".md5.ext.<random>.tmp"; a killed run can leave one.
_STALE_TEMP = re.compile(r"^\.(?:sample-)?[0-9a-f]{32}\.[a-z0-9]+\.[^.]+\.tmp$")


def remove_stale_temporaries(folder: Path) -> int:
    """Delete half-downloaded temporaries a killed earlier run left (never a finished file)."""
    removed = 0
    for path in folder.iterdir():
        if _STALE_TEMP.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _skip_reason(post: Post, types: set[str], max_bytes: int, sample: bool) -> str:
    if post.deleted:
        return "deleted"  # Danbooru still serves the files of deleted and banned posts
    if not post.file_url:
        return "hidden"
    if post.problem:
        return "unsafe"
    if types and post.ext not in types and not (sample and post.sample_ext in types):
        return "type"
    if max_bytes and not sample and post.size and post.size > max_bytes:
        return "size"
    return ""


def _tag_list(options: FetchOptions, booru: Booru) -> TagList | None:
    cache = options.cache_dir or Path(options.folder).expanduser() / ".embed-studio-cache"
    return resolve_tag_list(options.tag_list, cache, booru.client)


def fetch_job(options: FetchOptions) -> Job:
    """The fetch as a Job (the UI submits it; the CLI runs it in its own thread)."""
    options.validate()
    return Job("fetch", lambda ctx: run_fetch(options, ctx), total=options.limit)


@dataclass
class CaptionOptions:
    folder: Path
    connection: ConnectionOptions = field(default_factory=ConnectionOptions)
    tag_options: TagOptions = field(default_factory=TagOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    tag_list: str = ""
    cache_dir: Path | None = None


def run_caption(options: CaptionOptions, ctx: JobContext) -> CaptionSummary:
    booru = options.connection.open(cancelled=lambda: ctx.cancelled)
    try:
        cache = options.cache_dir or Path(options.folder).expanduser() / ".embed-studio-cache"
        tag_list = resolve_tag_list(options.tag_list, cache, booru.client)
        summary = caption_folder(
            Path(options.folder).expanduser(), booru, options.tag_options, options.output, tag_list,
            progress=lambda done, total, text: ctx.progress(done, total, text, label="md5"),
            check_cancelled=ctx.check_cancelled,
        )  # fmt: skip
    finally:
        booru.client.close()
    ctx.progress(summary.matched, summary.files, "done", label="file", summary=summary.text(booru.site))
    return summary


def caption_job(options: CaptionOptions) -> Job:
    return Job("caption", lambda ctx: run_caption(options, ctx))


def name_from_query(query: str) -> str:
    """A name for what is trained on a fetch: the query's wanted tags, 'zangoose -female score:>0' -> 'zangoose'."""
    words = [w for w in query.split() if not w.startswith(("-", "~")) and ":" not in w]
    name = "_".join(words)
    return "".join(c for c in name if c.isalnum() or c in "_-")[:60].strip("_-")


def default_folder(output_dir: str | os.PathLike, query: str) -> Path:
    """A folder name made from the query: 'zangoose -female' -> output_dir/booru/zangoose_-female."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in query.strip().replace(" ", "_"))[:80]
    return Path(output_dir) / "booru" / (safe or "fetch")
