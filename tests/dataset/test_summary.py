"""The dataset summary: counts, sizes, aspect histogram, buckets, missing captions."""

from __future__ import annotations

from PIL import Image

from embed_studio.dataset.buckets import assign_buckets
from embed_studio.dataset.summary import summarize


def test_summary_counts_sizes_buckets_and_captions(tmp_path):
    sizes = {"wide.png": (1024, 512), "tall.jpg": (512, 1024), "sq.png": (300, 300), "sq2.png": (600, 600)}
    for name, size in sizes.items():
        Image.new("RGB", size).save(tmp_path / name)
    (tmp_path / "wide.txt").write_text("a, b", encoding="utf-8")
    (tmp_path / "tall.txt").write_text(" , \n", encoding="utf-8")
    (tmp_path / "sq2.txt").write_text("c", encoding="utf-8")
    (tmp_path / "bad.png").write_bytes(b"junk")

    s = summarize(tmp_path, (512, 512))
    assert s.image_count == 5
    assert s.formats == {"png": 4, "jpg": 1}
    assert s.min_size == (300, 300) and s.max_size in ((1024, 512), (512, 1024))
    hist = dict(s.aspect_histogram)
    assert hist["square"] == 2 and hist["1:2 or taller"] == 1 and hist["2:1 or wider"] == 1
    assert sum(hist.values()) == 4
    expected = assign_buckets({n: sz for n, sz in sizes.items()}, 512 * 512)
    assert dict(s.buckets) == {b: len(v) for b, v in expected.items()}
    assert sorted(p.name for p in s.no_caption) == ["bad.png", "sq.png"]
    assert [p.name for p in s.empty_caption] == ["tall.jpg"]
    assert [p.name for p, _ in s.unreadable] == ["bad.png"]
    assert [p.name for p in s.smaller_than_training] == ["sq.png"]
    md = s.as_markdown()
    assert "5 images" in md and "without a caption" in md and "empty caption" in md


def test_aspect_bins_are_mirrored():
    from embed_studio.dataset.summary import aspect_bin

    assert aspect_bin(100, 100) == aspect_bin(101, 100) == "square"
    assert aspect_bin(130, 100) == "5:4 - 3:2" and aspect_bin(100, 130) == "4:5 - 2:3"
    assert aspect_bin(199, 100) == "3:2 - 2:1" and aspect_bin(100, 300) == "1:2 or taller"
