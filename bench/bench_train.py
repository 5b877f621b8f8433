"""Trainer speed at real model size: the trainer's loop against a WebUI-style baseline loop, in the same run.

The nets are built with the SD1.5 / SD2.1 shapes and random weights (speed does not depend on the weights'
values), so nothing is downloaded. The baseline does what the WebUI's own trainer does: fp32 master weights
under autocast, the VAE encoding every step, batch 1, a loss read back every step. Rows: backend, mode, batch,
images/s, steps/s, peak GiB (torch.cuda.max_memory_allocated on CUDA; "n/a" on the CPU, where the process's
peak RSS is printed once instead), ratio of images/s to the baseline.

    python bench/bench_train.py --smoke --json                      # CPU, tiny shapes, seconds (CI)
    python bench/bench_train.py --shape sd15 --steps 40 --batch-size 16
    python bench/bench_train.py --shape sd21 --steps 20 --batch-size 8 --hypernetwork --json
    python bench/bench_train.py --shape sd15 --steps 40 --batch-size 1,16 --compile   # the compile_unet option
    python bench/bench_train.py --shape sdxl --steps 10 --batch-size 1,4   # SDXL base at 1024, checkpointing on

bench/gpu.sh runs the set of them a GPU session measures (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))
from tiny_sd import build_tiny_sd, write_tokenizer  # noqa: E402
from tiny_sdxl import build_random_sdxl, build_tiny_sdxl  # noqa: E402

import embed_studio.backends.standalone as standalone  # noqa: E402
from embed_studio.backends.base import auto_precision  # noqa: E402
from embed_studio.backends.standalone import StandaloneBackend  # noqa: E402
from embed_studio.formats.embedding import save_embedding  # noqa: E402
from embed_studio.formats.hypernetwork import save_hypernetwork  # noqa: E402
from embed_studio.train.config import TrainConfig  # noqa: E402
from embed_studio.train.create import create_embedding, create_hypernetwork, default_target  # noqa: E402
from embed_studio.train.loop import train  # noqa: E402
from embed_studio.train.prompts import PromptOptions, build_prompt  # noqa: E402

CAPTION = "1girl, solo, black hair, red eyes, smile, dress, blue sky, looking at viewer, upper body, outdoors"
TEMPLATE = "a photo of [name], [filewords]"
# The real models' text vocabulary: the token table's size counts for memory and the optimizer's sparse rows.
CLIP_VOCAB = 49408

# Published diffusers configs of the two model families (runwayml SD1.5, stabilityai SD2.1 768-v).
SHAPES: dict[str, dict[str, Any]] = {
    "sd15": dict(
        resolution=512,
        prediction="epsilon",
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  hidden_act="quick_gelu", projection_dim=768),
        unet=dict(attention_head_dim=8, cross_attention_dim=768, use_linear_projection=False),
        pad="<|endoftext|>",
    ),
    "sd21": dict(
        resolution=768,
        prediction="v_prediction",
        text=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                  hidden_act="gelu", projection_dim=1024),
        unet=dict(attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True),
        pad="!",
    ),
}  # fmt: skip


def build_real_shape(shape: str, folder: Path, device: str) -> StandaloneBackend:
    """A StandaloneBackend with SD1.5/SD2.1-shaped nets and random weights, built in memory on `device`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    spec = SHAPES[shape]
    torch.manual_seed(0)
    write_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer(
        str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt"), pad_token=spec["pad"]
    )
    # Built directly on the device: initialising ~1.1 billion parameters on the CPU takes a minute.
    with torch.device(device):
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=CLIP_VOCAB, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **spec["text"],
            )
        )  # fmt: skip
        unet = UNet2DConditionModel(
            sample_size=spec["resolution"] // 8,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            **spec["unet"],
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, scaling_factor=0.18215,
        )  # fmt: skip
    scheduler = dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type=spec["prediction"], steps_offset=1, clip_sample=False, set_alpha_to_one=False,
    )  # fmt: skip
    return StandaloneBackend(unet, vae, text_encoder, tokenizer, scheduler, device, checkpoint_name=f"random-{shape}")


def build_sdxl_shape(folder: Path, device: str, tiny: bool) -> StandaloneBackend:
    """SDXL base's shapes (the diffusers configs Embed Studio ships), random weights, on `device`; tiny: the test
    suite's tiny SDXL (--smoke, on the CPU)."""
    if tiny:
        return StandaloneBackend.load(build_tiny_sdxl(folder), device)
    return build_random_sdxl(folder, device)


def make_dataset(folder: Path, count: int, side: int) -> Path:
    """Square noise images (one bucket, so every batch is full) with booru-style captions."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(CAPTION, encoding="utf-8")
    return folder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def _peak_reserved_gib(device: torch.device) -> float | None:
    # What the caching allocator held at most: closer to what a card must have free than the allocated peak
    # (a card also needs the CUDA context, a few hundred MiB, beyond it).
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved(device) / 2**30
    return None


def process_peak_rss_gib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


class _Clock:
    """A stand-in JobContext: marks the moment the warmup steps are done (with the device drained)."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start: float | None = None
        self.steps = 0

    def check_cancelled(self) -> None:
        pass

    def progress(self, done, total=None, text=None, **stats) -> None:
        if stats.get("label") != "step" or not done:
            return
        self.steps = done
        if done == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()

    def set_text(self, text: str) -> None:
        pass

    def add_image(self, path: str) -> None:
        pass


def _row(mode: str, kind: str, batch: int, steps: int, seconds: float, device: torch.device) -> dict:
    steps_per_s = steps / seconds if seconds > 0 else 0.0
    return {
        "backend": "standalone",
        "mode": mode,
        "kind": kind,
        "batch": batch,
        "steps": steps,
        "images_per_s": steps_per_s * batch,
        "steps_per_s": steps_per_s,
        "peak_gib": _peak_gib(device),
        "peak_reserved_gib": _peak_reserved_gib(device),
        "ratio": None,
    }


def run_trainer(
    backend: StandaloneBackend, kind: str, data: Path, work: Path, args: argparse.Namespace, batch: int
) -> dict:
    """The trainer's real loop (train()), frozen weights in the compute precision, cached latents."""
    label = f"{kind}-b{batch}"
    target = default_target(work, label, backend.family) if kind == "embedding" else work / f"{label}.pt"
    if kind == "embedding":
        save_embedding(create_embedding(backend, label, "black hair", args.vectors), target)
    else:
        save_hypernetwork(create_hypernetwork(label, backend.context_sizes, backend=backend), target)
    config = TrainConfig(
        kind=kind, model=f"random-{args.shape}", dataset=str(data), target=str(target), name=label,
        lr="0.005" if kind == "embedding" else "0.00001", batch_size=batch, grad_accum=1,
        max_steps=args.steps + args.warmup, save_every=0, preview_every=0, seed=0, precision=args.precision,
        half_weights=True, width=args.resolution, height=args.resolution, bucket_step=64,
        gradient_checkpointing=backend.family == "sdxl",  # a new SDXL run's default: batch 1 at 1024 fits 12 GB
        template=str(work / "template.txt"), shuffle_tags=True, log_dir=str(work / "logs" / label),
        compile_unet=args.compile,
    )  # fmt: skip
    _reset_peak(backend.device)
    clock = _Clock(args.warmup, backend.device)
    if args.sync_debug and backend.device.type == "cuda":
        # A warning with a stack for every place that waits for the GPU: the loss read-back every 16 steps,
        # the saves, and the GradScaler's inf check in fp16.
        torch.cuda.set_sync_debug_mode("warn")
    try:
        train(config, backend, clock)
    finally:
        if backend.device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    _sync(backend.device)
    end = time.perf_counter()
    if clock.start is None or clock.steps != args.steps + args.warmup:
        raise RuntimeError(f"{label}: the trainer ran {clock.steps} of {args.steps + args.warmup} steps")
    mode = "trainer+compile" if args.compile else "trainer"
    return _row(mode, kind, batch, args.steps, end - clock.start, backend.device)


def run_baseline(backend: StandaloneBackend, data: Path, args: argparse.Namespace) -> dict:
    """What the WebUI's trainer does per step: fp32 weights under autocast, VAE encode, batch 1, loss.item()."""
    device = backend.device
    backend.configure(args.baseline_precision, half_weights=False)
    backend.vae.to(device)
    images = sorted(data.glob("*.png"))
    pixels = [
        torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5
        - 1.0
        for p in images
    ]
    vectors = create_embedding(backend, "baseline", "black hair", args.vectors).vectors.to(device).requires_grad_()
    optimizer = torch.optim.AdamW([vectors], lr=0.005, weight_decay=0.0)
    fp16 = args.baseline_precision == "fp16" and device.type == "cuda"
    # torch.amp.GradScaler arrived in torch 2.3; the WebUI's torch 2.1 only has the cuda.amp one.
    if hasattr(torch.amp, "GradScaler"):
        scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    else:
        scaler = torch.cuda.amp.GradScaler(enabled=fp16)
    acp = backend.alphas_cumprod()
    rng = random.Random(0)
    options = PromptOptions(shuffle_tags=True)
    _reset_peak(device)
    start = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _sync(device)
            start = time.perf_counter()
        latents = backend.encode_images(pixels[step % len(pixels)]).sample()
        text = build_prompt(TEMPLATE, CAPTION, "baseline", options, rng)
        cond = backend.encode_prompts([backend.tokenize(text, "baseline", args.vectors)], vectors)
        noise = torch.randn_like(latents)
        t = torch.randint(0, acp.shape[0], (1,), device=device)
        a, s = acp[t].sqrt().view(-1, 1, 1, 1), (1 - acp[t]).sqrt().view(-1, 1, 1, 1)
        wanted = noise if backend.prediction_type == "epsilon" else a * noise - s * latents
        loss = torch.nn.functional.mse_loss(backend.predict(a * latents + s * noise, t, cond).float(), wanted)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the WebUI logs every step's loss
    _sync(device)
    return _row("baseline", "embedding", 1, args.steps, time.perf_counter() - start, device)


def bench(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "template.txt").write_text(TEMPLATE + "\n", encoding="utf-8")
        if args.shape in SHAPES:
            backend = build_real_shape(args.shape, work / "model", args.device)
        elif args.shape == "sdxl":
            backend = build_sdxl_shape(work / "model", args.device, tiny=args.smoke)
        else:
            backend = StandaloneBackend.load(build_tiny_sd(work / "model", size=args.shape), device)
        data = make_dataset(work / "data", max(2 * max(args.batch_size), 4), args.resolution)
        rows = [run_baseline(backend, data, args)]
        for batch in args.batch_size:
            rows.append(run_trainer(backend, "embedding", data, work, args, batch))
        if args.hypernetwork:
            rows.append(run_trainer(backend, "hypernetwork", data, work, args, max(args.batch_size)))
    base = rows[0]["images_per_s"]
    for row in rows:
        row["ratio"] = row["images_per_s"] / base if base else None
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "shape": args.shape,
        "resolution": args.resolution,
        "precision": args.precision if args.precision != "auto" else auto_precision(device),
        "baseline_precision": args.baseline_precision,
        "torch": torch.__version__,
        "peak_rss_gib": process_peak_rss_gib(),
        "rows": rows,
    }


def format_table(result: dict) -> str:
    lines = [
        f"device {result['device']}; shape {result['shape']} at {result['resolution']}x{result['resolution']}; "
        f"precision {result['precision']} (baseline {result['baseline_precision']}); torch {result['torch']}",
        f"{'backend':<11} {'mode':<28} {'batch':>5} {'images/s':>9} {'steps/s':>8} {'peak GiB':>8} {'ratio':>6}",
    ]
    for r in result["rows"]:
        peak = "n/a" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        ratio = "n/a" if r["ratio"] is None else f"x{r['ratio']:.2f}"
        mode = r["mode"] if r["mode"] == "baseline" else f"{r['mode']} {r['kind']}"
        lines.append(
            f"{r['backend']:<11} {mode:<28} {r['batch']:>5} {r['images_per_s']:>9.2f} {r['steps_per_s']:>8.2f} "
            f"{peak:>8} {ratio:>6}"
        )
    if all(r["peak_gib"] is None for r in result["rows"]):
        lines.append(f"peak RSS of the whole process: {result['peak_rss_gib']:.2f} GiB")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="", help="default: cuda when available, else cpu (--smoke: cpu)")
    parser.add_argument(
        "--shape",
        choices=["tiny", "small", *SHAPES, "sdxl"],
        default="sd15",
        help="sd15/sd21/sdxl: the real models' shapes (random weights); tiny: the test model; small: SD1-like UNet "
        "(--smoke --shape sdxl: the tiny SDXL test model)",
    )
    parser.add_argument("--resolution", type=int, default=0, help="training side in pixels (default: the shape's)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row (after warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (with --compile: the compiling)")
    parser.add_argument(
        "--batch-size", type=lambda s: [int(x) for x in s.split(",")], default=None,
        help="trainer batch sizes, comma-separated (default: 1,16; --smoke: 1,4)",
    )  # fmt: skip
    parser.add_argument("--vectors", type=int, default=4, help="embedding vectors")
    parser.add_argument("--hypernetwork", action="store_true", help="add a hypernetwork row at the largest batch")
    parser.add_argument(
        "--precision", default="auto", help="the trainer rows' (default: the trainer's auto); the baseline's too if set"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument(
        "--compile", action="store_true", help="trainer rows with the compile_unet option (warmup covers compiling)"
    )
    parser.add_argument(
        "--compile-backend", default=standalone.COMPILE_BACKEND,
        help="torch.compile backend for --compile (aot_eager: no code generation, for a quick CPU check)",
    )  # fmt: skip
    parser.add_argument(
        "--sync-debug", action="store_true", help="CUDA: warn with a stack at every host-device sync in trainer rows"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, a few steps: checks it runs")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape, args.device = "sdxl" if args.shape == "sdxl" else "tiny", args.device or "cpu"
        args.steps, args.warmup = min(args.steps, 3), min(args.warmup, 1)
        args.batch_size = args.batch_size or [1, 4]
        args.hypernetwork = args.shape != "sdxl"  # hypernetworks train on SD 1.x/2.x only
        args.threads = args.threads or 1  # the tiny nets are fastest on one thread
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.batch_size = args.batch_size or [1, 16]
    # The WebUI's own trainer: fp16 autocast on a GPU; fp32 on the CPU.
    args.baseline_precision = (
        args.precision if args.precision != "auto" else "fp16" if args.device.startswith("cuda") else "fp32"
    )
    args.resolution = args.resolution or (
        SHAPES[args.shape]["resolution"] if args.shape in SHAPES else 64 if args.shape == "tiny" or args.smoke
        else 1024 if args.shape == "sdxl" else 256
    )  # fmt: skip
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    if args.shape == "sdxl" and args.hypernetwork:
        parser.error("--hypernetwork: hypernetworks train on SD 1.x/2.x only, not on SDXL")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    standalone.COMPILE_BACKEND = args.compile_backend
    result = bench(args)
    print(json.dumps(result, indent=1) if args.json else format_table(result))


if __name__ == "__main__":
    main()
