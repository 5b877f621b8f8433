"""Tag a dataset folder: threaded decode, batched inference, cached probabilities, caption writes."""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from embed_studio.dataset.folder import caption_path, list_images, read_caption, require_folder, write_caption
from embed_studio.errors import CorruptImageError, DatasetError, UserInputError
from embed_studio.fileio import WriteError
from embed_studio.jobs import Job, JobContext
from embed_studio.tagger.cache import file_hash, get_cache
from embed_studio.tagger.caption import SKIP, check_action, combine
from embed_studio.tagger.hub import DEFAULT_CACHE, resolve_model
from embed_studio.tagger.model import TaggerModel, get_model, unload_models
from embed_studio.tagger.options import TaggerOptions
from embed_studio.tagger.preprocess import load_for_model, prepare_image
from embed_studio.tagger.registry import DEFAULT_MODEL
from embed_studio.tagger.select import Selection, select_tags
from embed_studio.tagspell import DEFAULT_ORDER, check_categories

WRITTEN, UNCHANGED, SKIPPED, FAILED, PREVIEW = "written", "unchanged", "skipped", "failed", "preview"
PROBABILITY_CACHE_DIR = "probability-cache"


@dataclass
class TagRequest:
    """One tagging run over a folder, as the panel, the CLI or the API asks for it."""

    folder: Path
    model: str = DEFAULT_MODEL  # a registry name/alias, or a folder holding model.onnx + tags CSV
    options: TaggerOptions = field(default_factory=TaggerOptions)
    on_existing: str = SKIP
    merge_order: tuple[str, ...] = DEFAULT_ORDER  # categories in caption order when merging
    recursive: bool = False
    dry_run: int = 0  # > 0: tag only that many images and write nothing
    batch_size: int = 8  # images per inference run, when the model's batch dimension allows it
    workers: int = 0  # decode threads; 0 = automatic
    device: str = "auto"  # "auto" (GPU when onnxruntime has one), "cuda" or "cpu"
    device_id: int = 0
    models_dir: Path | None = None  # downloads and the probability cache; None = the user cache
    use_cache: bool = True
    unload_after: bool = False
    endpoint: str | None = None  # a Hugging Face hub mirror


@dataclass
class ImageResult:
    path: Path
    status: str
    tags: list[str] = field(default_factory=list)
    caption: str | None = None  # what was (or, in a dry run, would be) written
    previous: str | None = None  # the caption before this run
    error: str | None = None
    cached: bool = False
    ratings: dict[str, float] = field(default_factory=dict)


@dataclass
class TagSummary:
    folder: Path
    model: str
    provider: str
    provider_note: str
    dry_run: bool
    total: int
    results: list[ImageResult]
    inferred: int  # images that went through the model
    cached: int  # images whose probabilities came from the cache
    runs: int  # session.run calls
    seconds: float  # decode + inference + writes, model loading excluded
    backup: str | None = None

    def tag_counts(self) -> Counter[str]:
        """How many images got each tag: the tags shared by the whole set are the ones to prune next."""
        counts: Counter[str] = Counter()
        for r in self.results:
            counts.update(r.tags)
        return counts

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def written(self) -> int:
        return self.count(WRITTEN)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED) + self.count(UNCHANGED)

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if r.status == FAILED]

    @property
    def images_per_second(self) -> float:
        processed = self.inferred + self.cached
        return processed / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        if self.dry_run:
            head = f"Dry run: tags for {len(self.results)} image(s), nothing written."
        else:
            head = f"{self.written} caption(s) written, {self.skipped} skipped, {len(self.failed)} failed."
        if not self.inferred + self.cached:
            return f"{head} Nothing needed the model."
        return (
            f"{head} {self.inferred} inferred, {self.cached} from cache, {self.images_per_second:.1f} images/s "
            f"on {self.provider}." + (f" Backup of the old captions: {self.backup}." if self.backup else "")
        )


@dataclass
class _Prepared:
    path: Path
    image_hash: str | None = None
    image: np.ndarray | None = None
    probs: np.ndarray | None = None
    error: str | None = None


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def load_tagger(
    model: str,
    models_dir: Path | None = None,
    *,
    device: str = "auto",
    device_id: int = 0,
    endpoint: str | None = None,
    ctx: JobContext | None = None,
) -> TaggerModel:
    """Resolve (downloading on first use) and load a model, reporting download progress to `ctx`."""

    def on_download(name: str, done: int, total: int | None) -> None:
        if ctx is not None:
            size = f"{done / 1e6:.0f}/{total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB"
            ctx.progress(0, None, f"Downloading {name}: {size}", label="image")

    files = resolve_model(model, models_dir, endpoint=endpoint, progress=on_download)
    if ctx is not None:
        ctx.set_text(f"Loading {files.name}…")
    return get_model(files, device, device_id)


def tag_image(
    image: str | os.PathLike | Image.Image,
    model: str = DEFAULT_MODEL,
    options: TaggerOptions | None = None,
    *,
    models_dir: Path | None = None,
    device: str = "auto",
) -> Selection:
    """The tags of one image, written nowhere (the panel's single-image check)."""
    return tag_with(load_tagger(model, models_dir, device=device), image, options)


def tag_with(
    tagger: TaggerModel, image: str | os.PathLike | Image.Image, options: TaggerOptions | None = None
) -> Selection:
    """The tags of one image from an already loaded model (the trainer's preview scoring keeps one)."""
    height, width = tagger.input.height, tagger.input.width
    if isinstance(image, Image.Image):
        pixels = prepare_image(image, height, width)
    else:
        pixels = load_for_model(image, height, width)
    probs = tagger.predict(pixels[None])[0]
    return select_tags(probs, tagger.labels, options or TaggerOptions())


def _backup_captions(folder: Path, images: list[Path], model: str) -> str | None:
    """Keep the captions this run may change, restorable from the dataset editor's backups."""
    from embed_studio.dataset.backups import create_backup

    targets = [caption_path(p) for p in images]
    if not any(t.is_file() for t in targets):
        return None
    return create_backup(folder, targets, kind="save", label=f"before tagging with {model}").name


def tag_folder(request: TagRequest, ctx: JobContext | None = None) -> TagSummary:
    """Tag every image of the folder (or the first `dry_run` ones, writing nothing)."""
    folder = require_folder(request.folder)
    check_action(request.on_existing)
    merge_order = check_categories(request.merge_order, "categories in the merge order")
    if request.batch_size < 1:
        raise UserInputError("Batch size must be at least 1.")
    images = list_images(folder, recursive=request.recursive)
    if not images:
        raise DatasetError(
            f"No images in {folder}{'' if request.recursive else ' (subfolders not searched: tick Recursive)'}."
        )
    dry = request.dry_run > 0
    if dry:
        images = images[: request.dry_run]
    results: list[ImageResult] = []
    todo = images
    if request.on_existing == SKIP and not dry:
        # Skipped images are never decoded: a rerun over a tagged folder costs nothing.
        todo = []
        for p in images:
            existing = read_caption(p)
            if existing:
                results.append(ImageResult(p, SKIPPED, previous=existing))
            else:
                todo.append(p)
    total = len(images)

    tally: Counter[str] = Counter(r.status for r in results)
    pre_skipped = len(results)

    def record(result: ImageResult) -> None:
        results.append(result)
        tally[result.status] += 1
        report(result.path.name)

    def report(text: str) -> None:
        if ctx is not None:
            counts = {WRITTEN: tally[WRITTEN], SKIPPED: tally[SKIPPED] + tally[UNCHANGED], FAILED: tally[FAILED]}
            elapsed = time.monotonic() - started if started else 0.0
            rate = round((inferred + cached) / elapsed, 2) if elapsed > 0 else None
            # done/total count the images that need the model; skipped ones show in the counts.
            ctx.progress(
                len(results) - pre_skipped,
                len(todo),
                text,
                label="image",
                provider=model.active_provider,
                provider_note=model.provider_note,
                images_per_s=rate,
                **counts,
            )

    started = 0.0
    inferred = cached = 0
    model = None
    if todo:
        model = load_tagger(
            request.model,
            request.models_dir,
            device=request.device,
            device_id=request.device_id,
            endpoint=request.endpoint,
            ctx=ctx,
        )
    if model is None:
        return TagSummary(folder, request.model, "none", "", dry, total, results, 0, 0, 0, 0.0)
    report(f"Tagging with {model.describe_provider()}")
    labels = model.labels
    cache_root = (request.models_dir or DEFAULT_CACHE) / PROBABILITY_CACHE_DIR if request.use_cache else None
    cache = get_cache(cache_root, model.key, len(labels))
    backup = None if dry else _backup_captions(folder, todo, model.name)

    height, width = model.input.height, model.input.width
    batch_size = model.batch_size(request.batch_size)
    workers = request.workers or default_workers()
    runs_before = model.run_count

    def prepare(path: Path) -> _Prepared:
        try:
            image_hash = file_hash(path)
        except OSError as e:
            return _Prepared(path, error=f"{path.name}: cannot read ({e.strerror or e}); it was skipped.")
        if request.use_cache:
            probs = cache.get(image_hash)
            if probs is not None:
                return _Prepared(path, image_hash, probs=probs)
        try:
            return _Prepared(path, image_hash, image=load_for_model(path, height, width))
        except CorruptImageError as e:
            return _Prepared(path, image_hash, error=str(e))
        except Exception as e:  # a decoder bug on one odd file must not stop the folder
            return _Prepared(path, image_hash, error=f"{path.name}: {type(e).__name__}: {e}; it was skipped.")

    def finish(item: _Prepared, probs: np.ndarray, from_cache: bool) -> None:
        selection: Selection = select_tags(probs, labels, request.options)
        previous = read_caption(item.path)
        caption = combine(previous, selection.tags, request.on_existing, labels.category_of, merge_order)
        result = ImageResult(
            item.path, PREVIEW, selection.tags, caption, previous, cached=from_cache, ratings=selection.ratings
        )
        if not dry:
            if caption is None or caption == previous:
                result.status = SKIPPED if caption is None else UNCHANGED
            else:
                try:
                    write_caption(item.path, caption)
                    result.status = WRITTEN
                except WriteError as e:
                    result.status, result.error = FAILED, str(e)
        record(result)

    def run_batch(pending: list[_Prepared]) -> None:
        nonlocal inferred
        if not pending:
            return
        probs = model.predict(np.stack([p.image for p in pending]))
        for item, row in zip(pending, probs, strict=True):
            if request.use_cache and item.image_hash:
                cache.put(item.image_hash, row)
            item.image = None  # let the pixels go as soon as possible
            finish(item, row, False)
        inferred += len(pending)
        pending.clear()

    started = time.monotonic()
    lookahead = batch_size * 2 + workers * 2
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed-studio-decode")
    window: deque[Future] = deque()
    queue = iter(todo)

    def fill() -> None:
        while len(window) < lookahead:
            path = next(queue, None)
            if path is None:
                return
            window.append(pool.submit(prepare, path))

    pending: list[_Prepared] = []
    try:
        fill()
        while window:
            if ctx is not None:
                ctx.check_cancelled()
            item = window.popleft().result()
            fill()
            if item.error:
                record(ImageResult(item.path, FAILED, error=item.error, previous=read_caption(item.path)))
            elif item.probs is not None:
                cached += 1
                finish(item, item.probs, True)
            else:
                pending.append(item)
                if len(pending) >= batch_size:
                    run_batch(pending)
        run_batch(pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if request.unload_after:
            unload_models()
    seconds = time.monotonic() - started
    order = {p: i for i, p in enumerate(images)}
    results.sort(key=lambda r: order.get(r.path, 0))
    summary = TagSummary(
        folder=folder,
        model=model.name,
        provider=model.active_provider,
        provider_note=model.provider_note,
        dry_run=dry,
        total=total,
        results=results,
        inferred=inferred,
        cached=cached,
        runs=model.run_count - runs_before,
        seconds=seconds,
        backup=backup,
    )
    if ctx is not None:
        ctx.progress(
            len(todo), len(todo), summary.describe(), label="image", images_per_s=round(summary.images_per_second, 2)
        )
    return summary


def make_tag_job(request: TagRequest) -> Job:
    """The run as a Job (kind "tag"): the panel and the API follow it, cancel it, read its result."""
    return Job("tag", lambda ctx: tag_folder(request, ctx))
