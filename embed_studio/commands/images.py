"""`embed-studio images DIR downscale|convert|flip|split|dedupe|summary|restore`: prepare images headless."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    """'512' or '768x512' -> (width, height)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use 512 or WIDTHxHEIGHT like 768x512") from None
    if len(nums) == 1:
        return nums[0], nums[0]
    if len(nums) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: use 512 or WIDTHxHEIGHT like 768x512")
    return nums[0], nums[1]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "images",
        help="downscale, convert, flip, split, de-duplicate and summarise the images of a dataset folder",
        description="Prepare a dataset's images. Replaced and removed files go to <dataset>/.embed-studio/trash; "
        "`restore` brings back the last operation's originals.",
    )
    p.add_argument("dir", type=Path, help="dataset folder")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def dry(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--dry-run", action="store_true", help="list what would change, write nothing")
        return parser

    d = dry(actions.add_parser("downscale", help="shrink images whose longer side is over a limit"))
    d.add_argument("--max-side", type=int, required=True, help="longest side in pixels (e.g. 1024)")

    c = dry(actions.add_parser("convert", help="GIF/WebP/CMYK/16-bit/transparent images to RGB PNG or JPEG"))
    c.add_argument("--format", choices=["png", "jpg"], default="png")
    c.add_argument("--background", default="#ffffff", help="colour transparency is flattened on (default white)")

    dry(actions.add_parser("flip", help="add mirrored copies (captions copied)"))

    s = dry(actions.add_parser("split", help="cut very tall or wide images into overlapping parts"))
    s.add_argument("--min-ratio", type=float, default=2.0, help="split images at least this long/short (default 2)")
    s.add_argument("--part-ratio", type=float, default=1.0, help="long/short side of each part (default 1: square)")
    s.add_argument("--overlap", type=float, default=0.2, help="overlap between parts, 0..0.9 (default 0.2)")

    dd = actions.add_parser("dedupe", help="find exact and near duplicates; --apply moves them to the trash")
    dd.add_argument("--threshold", type=int, default=6, help="perceptual-hash bits that may differ (0-32, default 6)")
    dd.add_argument("--exact-only", action="store_true", help="only byte-identical files (md5)")
    dd.add_argument("--apply", action="store_true", help="move the duplicates to the trash (default: only list)")

    sm = actions.add_parser("summary", help="counts, sizes, aspect ratios, training buckets, missing captions")
    sm.add_argument("--area", type=_size, default=(512, 512), help="training size, 512 or WIDTHxHEIGHT (default 512)")
    sm.add_argument("--json", action="store_true")

    rs = actions.add_parser("restore", help="undo the last image operation (or --batch NAME) from the trash")
    rs.add_argument("--batch", default=None)
    rs.add_argument("--list", action="store_true")
    p.set_defaults(func=run)


def _print_result(result) -> None:
    for path, what in result.items[:50]:
        print(f"  {path.name}: {what}")
    if len(result.items) > 50:
        print(f"  ... and {len(result.items) - 50} more")
    for path, why in result.skipped[:20]:
        print(f"  skipped {path.name}: {why}")
    print(result.summary())


def run(args: argparse.Namespace) -> int:
    from embed_studio.dataset import dedupe, preprocess, summary, trash

    folder = args.dir
    if args.action == "downscale":
        _print_result(preprocess.downscale(folder, args.max_side, dry_run=args.dry_run))
    elif args.action == "convert":
        _print_result(preprocess.convert(folder, args.format, background=args.background, dry_run=args.dry_run))
    elif args.action == "flip":
        _print_result(preprocess.flip(folder, dry_run=args.dry_run))
    elif args.action == "split":
        _print_result(
            preprocess.split(
                folder, min_ratio=args.min_ratio, part_ratio=args.part_ratio, overlap=args.overlap, dry_run=args.dry_run
            )
        )
    elif args.action == "dedupe":
        report = dedupe.find_duplicates(folder, args.threshold, near=not args.exact_only)
        for g in report.groups:
            print(f"keep {g.keep.name}")
            for d in g.duplicates:
                print(f"  {'identical' if d.exact else f'distance {d.distance}'}: {d.path.name}")
        for p, why in report.skipped:
            print(f"skipped {p.name}: {why}")
        if not args.apply:
            print(
                f"{report.duplicate_count} duplicate(s) in {len(report.groups)} group(s); --apply moves them to the trash"
            )
            return 0
        batch = dedupe.remove_duplicates(folder, report)
        print(
            f"moved {report.duplicate_count} duplicate(s) to trash {batch.name}; `images DIR restore` brings them back"
        )
    elif args.action == "summary":
        s = summary.summarize(folder, args.area)
        if args.json:
            print(
                json.dumps(
                    {
                        "images": s.image_count,
                        "formats": s.formats,
                        "min_size": s.min_size,
                        "max_size": s.max_size,
                        "aspect_histogram": dict(s.aspect_histogram),
                        "buckets": {f"{w}x{h}": n for (w, h), n in s.buckets},
                        "no_caption": [p.name for p in s.no_caption],
                        "empty_caption": [p.name for p in s.empty_caption],
                        "unreadable": [p.name for p, _ in s.unreadable],
                    },
                    ensure_ascii=False,
                )
            )
        else:
            print(s.as_markdown(max_names=20))
    elif args.action == "restore":
        if args.list:
            batches = trash.list_trash(folder)
            if not batches:
                print("trash is empty")
            for b in batches:
                print(b.describe())
            return 0
        b = trash.restore_trash(folder, args.batch)
        print(f"restored {b.name}: {len(b.moved)} file(s) back, {len(b.created)} created file(s) removed")
    return 0
