"""bench/bench_train.py --smoke --json runs on the CPU and reports both the baseline and the trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {"backend", "mode", "kind", "batch", "steps", "images_per_s", "steps_per_s", "peak_gib", "ratio"}


def test_smoke_json_has_baseline_and_trainer_rows():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_train.py"), "--smoke", "--json", "--steps", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["shape"] == "tiny" and result["device"].startswith("cpu")
    rows = result["rows"]
    assert all(set(r) == ROW_KEYS for r in rows)
    modes = [(r["mode"], r["kind"], r["batch"]) for r in rows]
    assert modes == [
        ("baseline", "embedding", 1),
        ("trainer", "embedding", 1),
        ("trainer", "embedding", 4),
        ("trainer", "hypernetwork", 4),
    ]
    for r in rows:
        assert r["backend"] == "standalone" and r["steps"] == 2
        assert r["steps_per_s"] > 0 and r["images_per_s"] == r["steps_per_s"] * r["batch"]
        assert r["peak_gib"] is None  # no CUDA allocator on the CPU; the process RSS is reported once instead
        assert abs(r["ratio"] - r["images_per_s"] / rows[0]["images_per_s"]) < 1e-9
    assert rows[0]["ratio"] == 1.0
    assert result["peak_rss_gib"] > 0


def test_smoke_sdxl_runs_the_tiny_sdxl_with_the_same_rows():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_train.py"), "--smoke", "--shape", "sdxl", "--json",
         "--steps", "1", "--batch-size", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["shape"] == "sdxl" and result["resolution"] == 64 and result["device"].startswith("cpu")
    rows = result["rows"]
    assert [(r["mode"], r["kind"], r["batch"]) for r in rows] == [
        ("baseline", "embedding", 1),
        ("trainer", "embedding", 2),
    ]
    assert all(set(r) == ROW_KEYS and r["steps_per_s"] > 0 for r in rows)
    assert rows[1]["ratio"] == rows[1]["images_per_s"] / rows[0]["images_per_s"]


def test_sdxl_hypernetwork_rows_are_refused_before_any_work():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_train.py"), "--shape", "sdxl", "--hypernetwork"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "SD 1.x/2.x only" in done.stderr


def test_table_names_every_column():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_train
    finally:
        sys.path.remove(str(ROOT / "bench"))
    row = dict(backend="standalone", mode="trainer", kind="embedding", batch=16, steps=5, images_per_s=160.0,
               steps_per_s=10.0, peak_gib=3.5, ratio=16.0)  # fmt: skip
    base = dict(row, mode="baseline", batch=1, images_per_s=10.0, peak_gib=None, ratio=1.0)
    table = bench_train.format_table(
        dict(device="x", shape="sd15", resolution=512, precision="fp16", torch="2", peak_rss_gib=1.0, rows=[base, row])
    )
    header, first, second = table.splitlines()[1:4]
    assert header.split() == ["backend", "mode", "batch", "images/s", "steps/s", "peak", "GiB", "ratio"]
    assert first.split() == ["standalone", "baseline", "1", "10.00", "10.00", "n/a", "x1.00"]
    assert second.split() == ["standalone", "trainer", "embedding", "16", "160.00", "10.00", "3.50", "x16.00"]
    assert "peak RSS" not in table  # shown only when no row has a device peak
