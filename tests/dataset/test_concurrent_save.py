"""Two saves on one dataset at once, and a save on a full disk: what is reported is what is on disk."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from PIL import Image

from embed_studio.dataset.captions import DatasetCaptions
from embed_studio.errors import DatasetError

IMAGES = 30
ROUNDS = 12


def _dataset(folder: Path, images: int = IMAGES, caption: str = "solo, smile") -> Path:
    folder.mkdir(parents=True)
    pixel = Image.new("RGB", (8, 8), (10, 20, 30))
    for i in range(images):
        pixel.save(folder / f"img{i:03d}.png")
        (folder / f"img{i:03d}.txt").write_text(caption, encoding="utf-8")
    return folder


def _save(folder: str, tag: str, barrier) -> str:
    ds = DatasetCaptions.load(folder)
    ds.add_tags([tag])
    barrier.wait()  # both sessions hold their edits and save at the same moment
    try:
        ds.save()
    except DatasetError as e:
        return f"refused: {e}"
    return "saved"


def _check_round(folder: Path, outcomes: dict[str, str]) -> None:
    saved = [tag for tag, outcome in outcomes.items() if outcome == "saved"]
    assert len(saved) == 1, outcomes  # never both "saved" (one's edits lost), never neither
    (refused,) = [outcome for outcome in outcomes.values() if outcome != "saved"]
    assert "changed on disk" in refused
    loser = next(tag for tag in outcomes if tag != saved[0])
    for caption in sorted(folder.glob("*.txt")):
        text = caption.read_text(encoding="utf-8")
        assert saved[0] in text and loser not in text, (caption.name, text, outcomes)


def test_two_threads_saving_at_once(tmp_path):
    # Two browsers on one WebUI: the same process.
    for n in range(ROUNDS):
        folder = _dataset(tmp_path / f"round{n}")
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def run(tag: str, folder: Path, barrier: threading.Barrier, outcomes: dict[str, str]) -> None:
            outcomes[tag] = _save(str(folder), tag, barrier)

        threads = [threading.Thread(target=run, args=(tag, folder, barrier, outcomes)) for tag in ("from a", "from b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _check_round(folder, outcomes)


def _save_in_child(folder: str, tag: str, barrier, results) -> None:
    results[tag] = _save(folder, tag, barrier)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_two_processes_saving_at_once(tmp_path):
    # The CLI and the WebUI on one folder: two processes.
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        for n in range(ROUNDS // 2):
            folder = _dataset(tmp_path / f"round{n}")
            barrier, results = ctx.Barrier(2), manager.dict()
            procs = [
                ctx.Process(target=_save_in_child, args=(str(folder), tag, barrier, results))
                for tag in ("from a", "from b")
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join(120)
                assert p.exitcode == 0
            _check_round(folder, dict(results))


def _fill_leaving(folder: Path, pages: int) -> None:
    """Fill the disk with a file, then free exactly `pages` 4 KiB pages of it."""
    filler = folder / "filler"
    page = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(page)
            except OSError:
                break
    with open(filler, "r+b") as f:
        f.truncate(max(0, filler.stat().st_size // 4096 - pages) * 4096)


def _check_failed_save(folder: Path, before: dict[str, str], ds: DatasetCaptions) -> None:
    with pytest.raises(DatasetError) as err:
        ds.save()
    message = str(err.value)
    after = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}
    changed = sorted(name for name in before if after[name] != before[name])
    if changed:
        # Any caption still holding the new text is named; none is claimed put back.
        assert "could not be put back" in message, (message, changed)
        for name in changed[:5]:
            assert name in message
    else:
        assert "put back" in message and "could not" not in message
    assert ds.dirty  # the edits are still there to save again


def test_disk_full_midway_reports_the_truth(small_disk):
    folder = _dataset(small_disk / "ds", images=6)
    before = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.txt")}
    ds = DatasetCaptions.load(folder)
    ds.add_tags(["new tag"])
    # A page for the backup's manifest and one for each of two new captions: the third caption finds the
    # disk full, and putting the first two back has not one free page to copy into.
    _fill_leaving(small_disk, pages=3)
    _check_failed_save(folder, before, ds)
