"""Trainer speed: the optimised loop (half weights, bucketed batches) against a naive baseline in the same run.

The baseline keeps fp32 weights under autocast and trains at batch size 1, like the WebUI's default setup.
Prints steps/s and images/s for both and their ratios.

    python bench/bench_train.py --device cpu --size tiny --steps 20
    python bench/bench_train.py --device cuda --size small --steps 40 --batch-size 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))
from tiny_sd import build_tiny_sd  # noqa: E402

from embed_studio.backends.standalone import StandaloneBackend  # noqa: E402
from embed_studio.formats.embedding import save_embedding  # noqa: E402
from embed_studio.train.config import TrainConfig  # noqa: E402
from embed_studio.train.create import create_embedding  # noqa: E402
from embed_studio.train.loop import train  # noqa: E402


class _Clock:
    """A stand-in JobContext that timestamps every finished step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def check_cancelled(self) -> None:
        pass

    def progress(self, done, total=None, text=None, **stats) -> None:
        if "loss" in stats:
            self.times.append(time.perf_counter())

    def set_text(self, text: str) -> None:
        pass

    def add_image(self, path: str) -> None:
        pass


def _dataset(folder: Path, count: int, area: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    side = int(area**0.5)
    shapes = [(side, side), (side * 3 // 2, side * 2 // 3), (side * 2 // 3, side * 3 // 2)]
    for i in range(count):
        w, h = shapes[i % len(shapes)]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text("1girl, solo, black hair, red eyes, smile, dress", encoding="utf-8")


def run(label: str, model: Path, data: Path, work: Path, device: str, steps: int, warmup: int, **overrides) -> dict:
    backend = StandaloneBackend.load(model, device)
    target = work / f"{label}.pt"
    save_embedding(create_embedding(backend, label, "black hair", 4), target)
    config = TrainConfig(
        kind="embedding",
        model=str(model),
        dataset=str(data),
        target=str(target),
        lr="0.005",
        grad_accum=1,
        max_steps=steps + warmup,
        save_every=0,
        preview_every=0,
        seed=0,
        log_dir=str(work / "logs" / label),
        **overrides,
    )
    clock = _Clock()
    train(config, backend, clock)
    if device == "cuda":
        torch.cuda.synchronize()
    times = clock.times[warmup:]
    seconds = times[-1] - times[0]
    steps_per_s = (len(times) - 1) / seconds
    return {
        "label": label,
        "steps_per_s": steps_per_s,
        "images_per_s": steps_per_s * config.batch_size,
        "batch_size": config.batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--size",
        choices=["tiny", "small"],
        default="tiny",
        help="tiny: test-sized model at 64px; small: SD1-shaped UNet at 256px (random weights)",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (after warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", default="", help="default: fp16 on CUDA, bf16 on CPU")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = args.precision or ("fp16" if args.device == "cuda" else "bf16")
    area, step = (64 * 64, 32) if args.size == "tiny" else (256 * 256, 64)
    side = int(area**0.5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = build_tiny_sd(tmp_path / "model", size=args.size)
        data = tmp_path / "data"
        _dataset(data, max(12, args.batch_size * 3), area)
        common = dict(width=side, height=side, bucket_step=step, precision=precision)
        naive = run(
            "naive",
            model,
            data,
            tmp_path,
            args.device,
            args.steps,
            args.warmup,
            batch_size=1,
            half_weights=False,
            **common,
        )
        fast = run(
            "optimised",
            model,
            data,
            tmp_path,
            args.device,
            args.steps,
            args.warmup,
            batch_size=args.batch_size,
            half_weights=True,
            **common,
        )
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(
        f"device: {device_name}; model: {args.size}; area {side}x{side}; precision {precision}; "
        f"torch {torch.__version__}"
    )
    for r in (naive, fast):
        print(
            f"  {r['label']:>9}: batch {r['batch_size']}, {r['steps_per_s']:.2f} steps/s, "
            f"{r['images_per_s']:.2f} images/s"
        )
    print(
        f"  ratio optimised/naive: steps/s x{fast['steps_per_s'] / naive['steps_per_s']:.2f}, "
        f"images/s x{fast['images_per_s'] / naive['images_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()
