"""`embed-studio tags DIR list|files|delete|replace|add|front|normalize|undo|restore`: prune captions headless."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tags",
        help="list, delete, replace and add caption tags across a dataset folder (with backup and restore)",
        description="Batch-edit the .txt captions of a dataset folder. Every write keeps a backup; "
        "`undo` puts the captions of the last save back.",
    )
    p.add_argument("dir", type=Path, help="dataset folder (images with .txt captions, or tags in file names)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def scoped(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--has", default="", help="only images that have all these tags (comma separated)")
        parser.add_argument("--lacks", default="", help="only images that have none of these tags")
        parser.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
        parser.add_argument("--no-filename-tags", action="store_true", help="ignore tags in file names")
        return parser

    lst = actions.add_parser("list", help="tags with their image counts and shares")
    lst.add_argument("--sort", choices=["count", "tag"], default="count")
    lst.add_argument("--search", default="", help="only tags containing this text")
    lst.add_argument("--limit", type=int, default=0, help="show at most N tags (0 = all)")
    lst.add_argument(
        "--suggest",
        type=float,
        default=None,
        metavar="SHARE",
        help="instead, suggest character tags on at least this share of images (e.g. 0.5)",
    )
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    scoped(lst)

    d = scoped(actions.add_parser("delete", help="remove tags from every caption"))
    d.add_argument("tags", nargs="+", help="tags to remove (quote tags with spaces)")

    r = scoped(actions.add_parser("replace", help="replace tags by another tag (e.g. nudity tags by nsfw)"))
    r.add_argument("tags", nargs="+", help="tags to replace")
    r.add_argument("--with", dest="new", required=True, help="replacement tag(s), comma separated")

    a = scoped(actions.add_parser("add", help="add tags to every caption that lacks them"))
    a.add_argument("tags", nargs="+")
    a.add_argument("--position", default="end", help="start, end, or a 0-based position (default: end)")

    f = scoped(actions.add_parser("front", help="move tags to the front of every caption that has them"))
    f.add_argument("tags", nargs="+")

    fl = actions.add_parser("files", help="list the images whose caption has a tag (in any spelling)")
    fl.add_argument("tags", nargs="+", help="the tag(s); an image with any of them is listed")
    fl.add_argument("--no-filename-tags", action="store_true", help="ignore tags in file names")

    n = scoped(
        actions.add_parser(
            "normalize",
            help="rewrite every caption to one spelling per tag (spaces, kaomoji kept, bare brackets)",
        )
    )
    n.add_argument(
        "--escape", action="store_true", help=r"write \( \) instead (for the WebUI's own Train tab on this folder)"
    )
    n.add_argument("--underscores", action="store_true", help="write underscores instead of spaces")

    actions.add_parser("undo", help="put back the captions replaced by the last save (restore the last backup)")
    rs = actions.add_parser("restore", help="restore a caption backup (default: the last one not restored)")
    rs.add_argument("--backup", default=None, help="backup name (see --list)")
    rs.add_argument("--list", action="store_true", help="list the backups")
    p.set_defaults(func=run)


def _split(values: list[str]) -> list[str]:
    from embed_studio.dataset.captions import parse_tag_list

    return parse_tag_list([t for v in values for t in v.split(",")])


def run(args: argparse.Namespace) -> int:
    from embed_studio.dataset import backups
    from embed_studio.dataset.captions import DatasetCaptions, parse_tag_list

    if args.action in ("undo", "restore"):
        if getattr(args, "list", False):
            infos = backups.list_backups(args.dir)
            if not infos:
                print("no backups")
            for b in infos:
                print(b.describe())
            return 0
        result = backups.restore_backup(args.dir, getattr(args, "backup", None))
        print(
            f"restored {len(result.restored)} caption(s) from {result.backup.name}, removed {len(result.removed)} "
            f"created by that save; the state before is in backup {result.safety.name}"
        )
        return 0

    ds = DatasetCaptions.load(args.dir, filename_tags=not args.no_filename_tags)
    if args.action == "files":
        for tag in _split(args.tags):
            files = ds.files_with(tag)
            spellings = ds.variants(tag)
            written = f" (written {', '.join(spellings)})" if len(spellings) > 1 else ""
            print(f"{ds.spelling_of(tag)}: {len(files)} image(s){written}")
            for path in files:
                print(f"  {path.relative_to(ds.folder).as_posix()}")
        return 0
    scope = None
    if getattr(args, "has", "") or getattr(args, "lacks", ""):
        scope = ds.filter(parse_tag_list(args.has), parse_tag_list(args.lacks))

    if args.action == "list":
        if args.suggest is not None:
            s = ds.suggest_character_tags(args.suggest, scope)
            if args.json:
                print(
                    json.dumps(
                        {"candidates": [r.__dict__ for r in s.candidates], "generic": [r.__dict__ for r in s.generic]}
                    )
                )
                return 0
            print(f"character tag candidates (on >= {s.threshold:.0%} of images):")
            for row in s.candidates:
                print(f"  {row.images:6d} {row.share:6.1%}  {row.tag}")
            if s.generic:
                print("frequent but generic (usually keep):")
                for row in s.generic:
                    print(f"  {row.images:6d} {row.share:6.1%}  {row.tag}")
            return 0
        rows = ds.tag_table(args.search, args.sort, scope)
        if args.limit:
            rows = rows[: args.limit]
        if args.json:
            print(json.dumps([r.__dict__ for r in rows], ensure_ascii=False))
        else:
            for row in rows:
                print(f"{row.images:6d} {row.share:6.1%}  {row.tag}")
            print(f"{ds.tag_count} tags on {len(ds) if scope is None else len(scope)} images")
        return 0

    if args.action == "normalize":
        from embed_studio.tagspell import Spelling

        edit = ds.normalize(Spelling(underscores=args.underscores, escape=args.escape), scope)
    else:
        edit = _edit(ds, args, scope)
    if args.dry_run:
        print(f"would {edit.label} in {edit.image_count} caption(s)")
        for c in edit.changes[:10]:
            print(f"  {ds.images[c.index].name}: {', '.join(c.after)}")
        return 0
    result = ds.save()
    where = (
        f"; replaced captions kept in backup {result.backup.name} (`tags DIR undo` puts them back)"
        if result.backup
        else ""
    )
    print(f"{edit.label}: {result.count} caption(s) written{where}")
    return 0


def _edit(ds, args: argparse.Namespace, scope: list[int] | None):
    tags = _split(args.tags)
    if args.action == "delete":
        return ds.delete_tags(tags, scope)
    if args.action == "replace":
        return ds.replace_tags(tags, args.new, scope)
    if args.action == "add":
        return ds.add_tags(tags, args.position, scope)
    return ds.move_to_front(tags, scope)
