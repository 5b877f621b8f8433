"""`embed-studio fetch` (download from a booru by query) and `caption` (tag a folder by md5)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SITES = ("e621", "danbooru")


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fetch",
        help="download images from e621/Danbooru by search query, captioned from the booru's tags",
        description="Download posts matching QUERY as md5.ext files (resumable), one API request a second, "
        "with a caption per image built from the post's own tags.",
    )
    f.add_argument("site", choices=SITES, help="the booru to search")
    f.add_argument("query", help='search in the booru\'s syntax, e.g. "zangoose -female score:>0"')
    f.add_argument("--out", type=Path, required=True, help="folder for the images (created if missing)")
    f.add_argument("--limit", type=int, default=150, help="how many files to get (default: 150)")
    f.add_argument("--types", default="jpg,png,webp", help="file extensions to keep, comma separated, or 'all'")
    f.add_argument(
        "--max-mb", type=float, default=0.0,
        help="skip originals larger than this many MB, and cut off any download past it (0: no limit)",
    )  # fmt: skip
    f.add_argument("--sample", action="store_true", help="get the booru's downscaled sample instead of the original")
    f.add_argument("--workers", type=int, default=3, help="parallel downloads (1-8, default 3)")
    f.add_argument("--no-captions", action="store_true", help="download only; write no captions")
    _connection_args(f)
    _tag_args(f)
    f.set_defaults(func=run_fetch_command)

    c = sub.add_parser(
        "caption",
        help="caption an existing folder of booru files (md5 names) from the booru's tags",
        description="Look up every md5-named image of DIR (copies like 'x (1).jpg' and the WebUI preprocessor's "
        "'00001-0 x.jpg' included) on the booru, 100 md5s a request, and write captions from the post tags.",
    )
    c.add_argument("site", choices=SITES, help="the booru whose tags to use")
    c.add_argument("folder", type=Path, help="folder of md5-named images")
    _connection_args(c)
    _tag_args(c)
    c.set_defaults(func=run_caption_command)


def _connection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--base-url", default="", help="server URL (default: the site's public server)")
    g.add_argument("--user", default="", help="your account name: sent in the User-Agent, and with --api-key to log in")
    g.add_argument(
        "--api-key", default=None, help="API key (or set EMBED_STUDIO_API_KEY; keeps it out of the process list)"
    )
    g.add_argument("--interval", type=float, default=1.0, help="seconds between API requests (default 1, at least 0.5)")


def _tag_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("captions")
    g.add_argument("--tag-list", default="", help="model tag CSV (path or URL, cached): keep only its tags, by count")
    g.add_argument("--cache-dir", type=Path, default=None, help="where a downloaded tag list is kept")
    g.add_argument("--categories", default="general,species", help="tag categories to keep (default general,species)")
    g.add_argument("--keep-unlisted", action="store_true", help="keep tags missing from the tag list")
    g.add_argument("--no-sort", action="store_true", help="keep the booru's order instead of sorting by count")
    g.add_argument("--no-artist", action="store_true", help="do not prepend 'by ARTIST'")
    g.add_argument("--no-rating", action="store_true", help="do not prepend the rating")
    g.add_argument(
        "--rating-template",
        default="{rating} content",
        help="how the prepended rating reads; {rating} is the rating's name, e.g. explicit (default: %(default)s)",
    )
    g.add_argument(
        "--artist-template",
        default="by {artist}",
        help="how the prepended artist reads; {artist} is the tag (default: %(default)s)",
    )
    g.add_argument("--include", default="", help="tags always added, comma separated")
    g.add_argument("--exclude", default="", help="tags never written, comma separated (* wildcards)")
    g.add_argument("--keep-underscores", action="store_true", help="keep underscores in tags")
    g.add_argument("--escape", action="store_true",
                   help=r"write \( \) into caption files (only for the WebUI's own Train tab; ours escapes itself)")  # fmt: skip
    g.add_argument("--output", choices=("sidecar", "filename", "kohya"), default="sidecar",
                   help="sidecar .txt files, tags as copies' file names, or a kohya N_name folder")  # fmt: skip
    g.add_argument("--output-dir", type=Path, default=None, help="where filename/kohya copies go")
    g.add_argument(
        "--kohya-repeats",
        type=int,
        default=10,
        help="with --output kohya: the N of the N_name folder, repeats per epoch (default: %(default)s)",
    )
    g.add_argument(
        "--kohya-name",
        default="subject",
        help="with --output kohya: the name of the N_name folder (default: %(default)s)",
    )
    g.add_argument("--overwrite-captions", action="store_true", help="replace existing caption files")


def _connection(args: argparse.Namespace):
    from embed_studio.booru.fetch import ConnectionOptions

    api_key = args.api_key if args.api_key is not None else os.environ.get("EMBED_STUDIO_API_KEY", "")
    return ConnectionOptions(
        site=args.site, base_url=args.base_url, username=args.user, api_key=api_key, min_interval=args.interval
    )


def _tag_options(args: argparse.Namespace):
    from embed_studio.booru.captions import OutputOptions
    from embed_studio.booru.tagfilter import TagOptions, parse_tag_field

    tags = TagOptions(
        categories=parse_tag_field(args.categories),
        keep_only_listed=not args.keep_unlisted,
        sort_by_count=not args.no_sort,
        prepend_rating=not args.no_rating,
        rating_template=args.rating_template,
        prepend_artist=not args.no_artist,
        artist_template=args.artist_template,
        include=parse_tag_field(args.include),
        exclude=parse_tag_field(args.exclude),
        underscores_to_spaces=not args.keep_underscores,
        escape_brackets=args.escape,
    )
    output = OutputOptions(
        mode=args.output, folder=args.output_dir, kohya_repeats=args.kohya_repeats, kohya_name=args.kohya_name,
        overwrite=args.overwrite_captions,
    )  # fmt: skip
    return tags, output


def run_fetch_command(args: argparse.Namespace) -> int:
    from embed_studio.booru.fetch import FetchOptions, fetch_job
    from embed_studio.booru.tagfilter import parse_tag_field
    from embed_studio.fileio import ensure_writable_dir

    # Before any request: a download folder that cannot be written would fail every file.
    ensure_writable_dir(args.out, "download folder (--out)")
    if args.output_dir is not None:
        ensure_writable_dir(args.output_dir, "caption copies folder (--output-dir)")
    tags, output = _tag_options(args)
    types = () if args.types.strip().lower() == "all" else parse_tag_field(args.types)
    options = FetchOptions(
        query=args.query, folder=args.out, limit=args.limit, connection=_connection(args), types=types,
        max_mb=args.max_mb, sample=args.sample, workers=args.workers, write_captions=not args.no_captions,
        tag_options=tags, output=output, tag_list=args.tag_list, cache_dir=args.cache_dir,
    )  # fmt: skip
    # Downloads and captions are written whole or not at all (a temporary renamed at the end): what is there is done.
    return _run(
        fetch_job(options), lambda result: result.text(),
        lambda status: f"{status.stats.get('files', 0)} new file(s) kept in {args.out}, each complete; the same "
        "command again goes on where this one stopped",
    )  # fmt: skip


def run_caption_command(args: argparse.Namespace) -> int:
    from embed_studio.booru.fetch import CaptionOptions, caption_job

    tags, output = _tag_options(args)
    options = CaptionOptions(
        folder=args.folder, connection=_connection(args), tag_options=tags, output=output, tag_list=args.tag_list,
        cache_dir=args.cache_dir,
    )  # fmt: skip
    return _run(
        caption_job(options), lambda result: result.text(args.site),
        lambda status: f"{int(status.done)}/{int(status.total or 0)} md5(s) looked up; the captions written for "
        "them are kept, each complete",
        unit="md5s",
    )  # fmt: skip


def _run(job, summarise, kept, unit: str = "files") -> int:
    """Run a job with its progress on stderr; Ctrl-C cancels it, keeping every file already written."""
    from embed_studio.commands.progress_display import ProgressDisplay, cancelled_exit_code, run_job
    from embed_studio.jobs import CANCELLED, DONE

    received = run_job(
        job, ProgressDisplay(unit=unit), "cancelling: finishing the files in flight…",
        "still finishing the files in flight; it ends once they are written or discarded",
    )  # fmt: skip
    status = job.status()
    if status.state == DONE:
        print(summarise(job.result))
        # Files that failed leave the run unfinished for a script, though the others were fetched.
        return 1 if getattr(job.result, "failed", None) else 0
    if status.state == CANCELLED:
        print(f"cancelled: {kept(status)}", file=sys.stderr)
        return cancelled_exit_code(received)
    if "summary" in status.stats:
        print(status.stats["summary"])
    print(f"error: {status.error}", file=sys.stderr)
    return 1
