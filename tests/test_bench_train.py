"""bench/bench_train.py --smoke --json runs on the CPU and reports both the baseline and the trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {
    "backend", "mode", "kind", "batch", "steps", "images_per_s", "steps_per_s", "peak_gib", "peak_reserved_gib", "ratio"
}  # fmt: skip


def test_smoke_json_has_baseline_and_trainer_rows():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_train.py"), "--smoke", "--json", "--steps", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["shape"] == "tiny" and result["device"].startswith("cpu")
    # The trainer's own choice on the CPU, and the WebUI's for the baseline.
    assert result["precision"] == result["baseline_precision"] == "fp32"
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
        assert r["peak_gib"] is None and r["peak_reserved_gib"] is None  # no CUDA allocator on the CPU: the
        # process RSS is reported once instead
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
        dict(
            device="x",
            shape="sd15",
            resolution=512,
            precision="bf16",
            baseline_precision="fp16",
            torch="2",
            peak_rss_gib=1.0,
            rows=[base, row],
        )  # fmt: skip
    )
    assert "precision bf16 (baseline fp16)" in table.splitlines()[0]
    header, first, second = table.splitlines()[1:4]
    assert header.split() == ["backend", "mode", "batch", "images/s", "steps/s", "peak", "GiB", "ratio"]
    assert first.split() == ["standalone", "baseline", "1", "10.00", "10.00", "n/a", "x1.00"]
    assert second.split() == ["standalone", "trainer", "embedding", "16", "160.00", "10.00", "3.50", "x16.00"]
    assert "peak RSS" not in table  # shown only when no row has a device peak


def test_gpu_summary_picks_the_largest_batch_per_card(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_summary
    finally:
        sys.path.remove(str(ROOT / "bench"))

    def row(mode, kind, batch, reserved):
        return dict(backend="standalone", mode=mode, kind=kind, batch=batch, steps=2, images_per_s=1.0,
                    steps_per_s=1.0, peak_gib=reserved, peak_reserved_gib=reserved, ratio=1.0)  # fmt: skip

    rows = [
        row("baseline", "embedding", 1, 2.0),
        row("trainer", "embedding", 1, 3.0),
        row("trainer", "embedding", 4, 5.4),  # + 0.5 GiB context: 5.9, within 6
        row("trainer", "embedding", 8, 7.6),  # 8.1: not within 8
        row("trainer", "embedding", 16, 11.0),
        row("trainer", "hypernetwork", 32, 1.0),  # another kind: not an embedding's batch
    ]
    assert gpu_summary.largest_batches(rows) == {6: 4, 8: 4, 12: 16}
    assert gpu_summary.largest_batches([row("trainer", "embedding", 1, 7.0)]) == {6: None, 8: 1, 12: 1}
    result = dict(device="x", shape="sd15", resolution=512, precision="bf16", baseline_precision="fp16", torch="2",
                  peak_rss_gib=1.0, rows=rows)  # fmt: skip
    (tmp_path / "memory.json").write_text(json.dumps(result), encoding="utf-8")
    text = gpu_summary.summary(tmp_path)
    assert "- 6 GB: batch 4" in text and "- 12 GB: batch 16" in text
    assert "## plain\n\nno result (see plain.log)" in text
