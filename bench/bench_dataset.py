"""How interactive the Dataset panel stays on a large folder (10,000 images by default).

Builds a folder of tiny images with 20-tag captions, then times what the panel does: open (list +
read captions + index), the tag table, a filter, a delete-everywhere, its undo, one gallery page of
thumbnails, and a save of every caption (with its backup). Baselines measured in the same run:
  - open vs. the bare I/O of reading every caption file (os.scandir + read + split);
  - delete-everywhere vs. the naive way (rewrite every caption, recount every tag from scratch).
Usage:

    python bench/bench_dataset.py [--images 10000] [--tags 20] [--no-save] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image


def build(folder: Path, n: int, tags_per_image: int) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    data = buf.getvalue()
    for i in range(n):
        name = f"{i:05d} [{i % 3}] ünï.png"  # odd names on purpose: spaces, brackets, unicode
        (folder / name).write_bytes(data)
        tags = ["1girl", "blue hair", "solo"] + [f"tag{(i * 7 + k) % 800}" for k in range(tags_per_image - 3)]
        (folder / name).with_suffix(".txt").write_text(", ".join(tags), encoding="utf-8")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def baseline_read(folder: Path) -> list[list[str]]:
    out = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".txt"):
            with open(entry.path, encoding="utf-8") as f:
                out.append([t.strip() for t in f.read().split(",")])
    return out


def naive_delete(captions: list[list[str]], tag: str) -> Counter:
    edited = [[t for t in c if t != tag] for c in captions]
    return Counter(t for c in edited for t in set(c))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=20)
    parser.add_argument("--no-save", action="store_true", help="skip timing the save of every caption")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from embed_studio.dataset.session import DatasetSession

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="es-bench-dataset-") as tmp:
        folder = Path(tmp)
        _, results["build_s"] = timed(lambda: build(folder, args.images, args.tags))
        raw, results["baseline_read_s"] = timed(lambda: baseline_read(folder))
        session = DatasetSession()
        ds, results["open_s"] = timed(lambda: session.open(folder))
        _, results["tag_table_s"] = timed(lambda: session.table())
        _, results["tag_table_search_s"] = timed(lambda: session.table("tag1"))
        _, results["filter_s"] = timed(lambda: ds.filter(has=["tag3"], lacks=["tag10"]))
        _, results["naive_delete_s"] = timed(lambda: naive_delete(raw, "blue hair"))
        edit, results["delete_everywhere_s"] = timed(lambda: ds.delete_tags("blue hair"))
        assert edit.image_count == args.images
        _, results["table_after_delete_s"] = timed(lambda: session.table())
        _, results["undo_s"] = timed(ds.undo)
        _, results["redo_s"] = timed(ds.redo)
        _, results["gallery_page_s"] = timed(session.gallery)
        if not args.no_save:
            saved, results["save_all_s"] = timed(ds.save)
            assert saved.count == args.images

    results["open_vs_bare_read"] = results["open_s"] / results["baseline_read_s"]
    results["delete_vs_naive"] = results["delete_everywhere_s"] / results["naive_delete_s"]
    print(f"{args.images} images, {args.tags} tags each (python {sys.version.split()[0]})")
    for key, value in results.items():
        unit = "x" if "_vs_" in key else "s"
        print(f"  {key:24s} {value:9.4f} {unit}")
    if args.json:
        args.json.write_text(json.dumps({"images": args.images, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
