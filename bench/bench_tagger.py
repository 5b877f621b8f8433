"""Images/s of the tagger pipeline (threaded decode + batched inference) vs a one-image-at-a-time loop.

Both run in the same process on the same generated folder of JPEGs with a generated
WD-shaped ONNX model (448x448 NHWC input, a small conv stack, 2,000 sigmoid outputs), so the
ratio is meaningful on any machine. Usage:

    python bench/bench_tagger.py [--images 48] [--size 448] [--device auto|cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

N_TAGS = 2000


def build_model(folder: Path, size: int) -> Path:
    """A dynamic-batch NHWC tagger heavy enough that inference is not trivial."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    chans = [3, 24, 48, 96, 128]
    init = [numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale")]
    nodes = [
        helper.make_node("Mul", ["input", "scale"], ["x_scaled"]),
        helper.make_node("Transpose", ["x_scaled"], ["x0"], perm=[0, 3, 1, 2]),
    ]
    prev = "x0"
    for i in range(len(chans) - 1):
        w = (rng.standard_normal((chans[i + 1], chans[i], 3, 3)) * (2 / (9 * chans[i])) ** 0.5).astype(np.float32)
        init.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(
            helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    init.append(numpy_helper.from_array((rng.standard_normal((chans[-1], N_TAGS)) * 0.1).astype(np.float32), "fc"))
    nodes += [
        helper.make_node("ReduceMean", [prev], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "fc"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_tagger",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", N_TAGS])],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    with open(folder / "selected_tags.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tag_id", "name", "category", "count"])
        for i in range(N_TAGS):
            w.writerow([i, f"tag_{i}", 9 if i < 4 else (4 if i % 50 == 0 else 0), 1])
    return folder


def build_images(folder: Path, count: int) -> None:
    """Booru-like JPEGs: 1200x900 and 900x1200 with smooth content and some noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:900, 0:1200]
    for i in range(count):
        base = np.stack([(x * (i + 1) / 7) % 256, (y * (i + 3) / 5) % 256, ((x + y) / 9 + i * 20) % 256], axis=-1)
        img = (base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        if i % 2:
            img = img.transpose(1, 0, 2)
        Image.fromarray(img).save(folder / f"img_{i:03d}.jpg", quality=90)


def baseline(folder: Path, model_dir: Path, device: str) -> float:
    """What the WD14 extensions do: open, convert, run batch 1, write, one image after another."""
    from embed_studio.dataset.folder import list_images, write_caption
    from embed_studio.dataset.imageio import load_rgb
    from embed_studio.tagger.hub import resolve_model
    from embed_studio.tagger.model import TaggerModel
    from embed_studio.tagger.options import TagOptions
    from embed_studio.tagger.preprocess import prepare_image
    from embed_studio.tagger.select import select_tags

    model = TaggerModel(resolve_model(model_dir), device)
    options = TagOptions()
    size = model.input.height
    model.predict(np.zeros((1, size, size, 3), np.float32))  # warm-up, as the pipeline's first batch pays it too
    images = list_images(folder)
    start = time.perf_counter()
    for path in images:
        arr = prepare_image(load_rgb(path), size)
        probs = model.predict(arr[None])[0]
        write_caption(path, ", ".join(select_tags(probs, model.labels, options).tags))
    return len(images) / (time.perf_counter() - start)


def pipeline(folder: Path, model_dir: Path, device: str, batch: int, cache_dir: Path) -> tuple[float, str]:
    from embed_studio.tagger.hub import resolve_model
    from embed_studio.tagger.model import get_model
    from embed_studio.tagger.pipeline import TagRequest, tag_folder

    model = get_model(resolve_model(model_dir), device)
    size = model.input.height
    model.predict(np.zeros((1, size, size, 3), np.float32))
    request = TagRequest(
        folder=folder,
        model=str(model_dir),
        on_existing="overwrite",
        batch_size=batch,
        device=device,
        models_dir=cache_dir,
        use_cache=False,
    )
    start = time.perf_counter()
    summary = tag_folder(request)
    rate = (summary.inferred) / (time.perf_counter() - start)
    assert summary.written + summary.count("unchanged") == summary.total and not summary.failed
    return rate, summary.provider


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="es-bench-tagger-") as tmp:
        tmp = Path(tmp)
        model_dir = build_model(tmp / "model", args.size)
        data = tmp / "data"
        build_images(data, args.images)
        base = baseline(data, model_dir, args.device)
        fast, provider = pipeline(data, model_dir, args.device, args.batch, tmp / "cache")
    result = {
        "images": args.images,
        "input_size": args.size,
        "batch": args.batch,
        "provider": provider,
        "baseline_images_per_s": round(base, 2),
        "pipeline_images_per_s": round(fast, 2),
        "speedup": round(fast / base, 2),
    }
    print(
        f"tagger on {provider}: one-at-a-time {base:.2f} img/s, pipeline {fast:.2f} img/s "
        f"(threaded decode + batch {args.batch}): {fast / base:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
