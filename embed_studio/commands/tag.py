"""`embed-studio tag DIR --model NAME_OR_PATH`: write WD tagger captions beside every image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _tag_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    from embed_studio.tagger.caption import ACTIONS, SKIP
    from embed_studio.tagger.options import DEFAULT_CATEGORIES, SORT_MODES, TAGGER_CATEGORIES
    from embed_studio.tagger.registry import DEFAULT_MODEL
    from embed_studio.tagspell import DEFAULT_ORDER

    p = sub.add_parser(
        "tag",
        help="tag every image of a folder with a WD tagger (captions written beside the images)",
        description="Tag every image of DIR with a WD14/WD v3/Z3D ONNX tagger and write NAME.txt beside each image.",
    )
    p.add_argument("folder", type=Path, metavar="DIR", nargs="?", help="dataset folder")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"registry name or folder with model.onnx + tags CSV (default: {DEFAULT_MODEL})",
    )
    p.add_argument("--list-models", action="store_true", help="list the known models and exit")
    p.add_argument(
        "--general-threshold", type=float, default=None,
        help="keep general tags scored at least this, 0 to 1 (default: the model's published value)",
    )  # fmt: skip
    p.add_argument(
        "--character-threshold", type=float, default=None,
        help="keep character tags scored at least this, 0 to 1 (default: the model's published value)",
    )  # fmt: skip
    p.add_argument("--mcut-general", action="store_true", help="automatic general threshold per image (MCut)")
    p.add_argument("--mcut-character", action="store_true", help="automatic character threshold per image (MCut)")
    p.add_argument("--ratings", action="store_true", help="put the most likely rating tag first")
    p.add_argument("--max-tags", type=int, default=0, help="keep only the N most confident predicted tags (0: all)")
    p.add_argument(
        "--sort", choices=SORT_MODES, default="confidence", help="order of the predicted tags (default: %(default)s)"
    )
    p.add_argument("--underscores", action="store_true", help="keep underscores (default: spaces, kaomoji kept)")
    p.add_argument(
        "--underscore-exceptions",
        type=_tag_list,
        default=None,
        help="comma-separated tags whose underscores stay (default: the WD kaomoji, e.g. ^_^)",
    )
    p.add_argument("--escape", action="store_true", help=r"escape brackets: kiana_(honkai) -> kiana \(honkai\)")
    p.add_argument("--weights", action="store_true", help="write (tag:0.87) with each tag's confidence")
    p.add_argument(
        "--categories",
        default=",".join(DEFAULT_CATEGORIES),
        help=f"categories written, comma separated, of {', '.join(TAGGER_CATEGORIES)} (default: %(default)s)",
    )
    p.add_argument(
        "--category-thresholds",
        default="",
        metavar="CAT=T,...",
        help="thresholds of other categories, e.g. species=0.3,meta=0.5 (default: the general threshold)",
    )
    p.add_argument(
        "--merge-order",
        default=",".join(DEFAULT_ORDER),
        help="with --on-existing merge: category order of the caption (default: %(default)s)",
    )
    p.add_argument("--exclude", type=_tag_list, default=[], help="comma-separated tags never written")
    p.add_argument("--add", type=_tag_list, default=[], help="comma-separated tags written first in every caption")
    p.add_argument("--recursive", action="store_true", help="also tag images in subfolders")
    p.add_argument(
        "--on-existing", choices=ACTIONS, default=SKIP, help="what to do with an existing caption (default: skip)"
    )
    p.add_argument(
        "--dry-run",
        type=int,
        nargs="?",
        const=5,
        default=0,
        metavar="N",
        help="show tags for N images (5), write nothing",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per model run (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="decode threads (default: automatic)")
    p.add_argument(
        "--device", choices=("auto", "cuda", "cpu"), default="auto",
        help="where the model runs; auto: the GPU when onnxruntime-gpu can use one (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--models-dir", type=Path, default=None, help="download and cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store probabilities")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed_studio.commands.progress_display import ProgressDisplay, cancelled_exit_code, is_verbose, run_job
    from embed_studio.errors import Cancelled, UserInputError
    from embed_studio.jobs import Job
    from embed_studio.tagger.options import TaggerOptions, parse_thresholds
    from embed_studio.tagger.pipeline import TagRequest, tag_folder
    from embed_studio.tagger.registry import MODELS, ModelSpec, find_spec
    from embed_studio.tagspell import KAOMOJI

    local_defaults = ModelSpec(name="local", repo_id="")  # WD defaults for a local folder

    if args.list_models:
        for spec in MODELS.values():
            print(f"{spec.name:32} {spec.repo_id:42} {spec.general_threshold:.2f}/{spec.character_threshold:.2f}")
        return 0
    if args.folder is None:
        raise UserInputError("Give the dataset folder: embed-studio tag DIR [--model NAME_OR_FOLDER].")
    # Thresholds left out start where the model's authors put them.
    spec = None if Path(args.model).expanduser().exists() else find_spec(args.model)
    general = args.general_threshold
    character = args.character_threshold
    options = TaggerOptions(
        general_threshold=general if general is not None else (spec or local_defaults).general_threshold,
        character_threshold=character if character is not None else (spec or local_defaults).character_threshold,
        general_mcut=args.mcut_general,
        character_mcut=args.mcut_character,
        include_ratings=args.ratings,
        max_tags=args.max_tags,
        sort=args.sort,
        replace_underscores=not args.underscores,
        underscore_exceptions=KAOMOJI if args.underscore_exceptions is None else frozenset(args.underscore_exceptions),
        escape_brackets=args.escape,
        weights=args.weights,
        exclude_tags=args.exclude,
        additional_tags=args.add,
        categories=tuple(_tag_list(args.categories)),
        category_thresholds=parse_thresholds(args.category_thresholds),
    )
    request = TagRequest(
        folder=args.folder,
        model=args.model,
        options=options,
        on_existing=args.on_existing,
        merge_order=tuple(_tag_list(args.merge_order)),
        recursive=args.recursive,
        dry_run=args.dry_run or 0,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        models_dir=args.models_dir,
        use_cache=not args.no_cache,
    )
    if not is_verbose():  # onnxruntime's own warnings (providers, graph fusions) on every session
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
    job = Job("tag", lambda ctx: tag_folder(request, ctx))
    received = run_job(
        job, ProgressDisplay(unit="img"), "cancelling: finishing the image in hand…",
        "still finishing the image in hand; it ends in a moment",
    )  # fmt: skip
    if isinstance(job.exception, Cancelled):
        print(f"cancelled: {_kept(job.status(), request.dry_run)}", file=sys.stderr)
        return cancelled_exit_code(received)
    if job.exception is not None:
        raise job.exception
    summary = job.result
    if summary.provider_note:
        print(f"note: {summary.provider_note}", file=sys.stderr)
    for r in summary.results:
        if summary.dry_run:
            print(f"{r.path.name}: {', '.join(r.tags) if r.status != 'failed' else r.error}")
            if r.previous:
                print(f"  existing: {r.previous}")
                print(f"  would write: {r.caption if r.caption is not None else '(left alone: skip)'}")
        elif r.status == "failed":
            print(f"failed: {r.error}", file=sys.stderr)
    print(summary.describe())
    return 0


def _kept(status, dry_run: int) -> str:
    """What a cancelled run leaves: each caption is written whole (temporary + rename) or not at all."""
    if dry_run:
        return "nothing written (dry run)"
    if status.total is None:  # stopped before the images were counted (model loading)
        return "nothing written yet"
    written = status.stats.get("written", 0)
    left = max(0, int(status.total or 0) - int(status.done))
    return (
        f"{written} caption(s) written and kept, {left} image(s) not tagged yet; run it again with "
        "--on-existing skip to tag only those"
    )
