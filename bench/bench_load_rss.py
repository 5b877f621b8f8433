"""Host memory while a single-file SDXL checkpoint loads (standalone backend, CPU): peak RSS against the weights.

Each file loads in a fresh process. Anonymous memory (what the kernel cannot drop) is sampled every 2 ms; the
file-backed part of RSS is the memory-mapped checkpoint, page cache the kernel reclaims under pressure.

    python bench/bench_load_rss.py MODEL.safetensors [MODEL.ckpt ...]
    python bench/bench_load_rss.py --tiny      # the tests' tiny SDXL as .safetensors and .ckpt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, threading, time
def status():
    return {l.split(":")[0]: int(l.split()[1]) / 1024 for l in open("/proc/self/status")
            if l.startswith(("VmRSS", "RssAnon", "RssFile", "VmHWM"))}
import torch, diffusers, transformers  # the libraries' own memory is not the checkpoint's
from embed_studio.backends.standalone import StandaloneBackend
base, peak, done = status(), [0.0], []
def sample():
    while not done:
        peak[0] = max(peak[0], status()["RssAnon"])
        time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()
started = time.perf_counter()
backend = StandaloneBackend.load(sys.argv[1], "cpu")
seconds = time.perf_counter() - started
done.append(1)
after = status()
parts = (backend.unet, backend.vae, backend.text_encoder, backend.text_encoder_2)
weights = sum(p.numel() * p.element_size() for m in parts for p in m.parameters()) / 2**20
print(json.dumps({"weights_mib": weights, "anon_peak_mib": peak[0] - base["RssAnon"],
                  "hwm_mib": after["VmHWM"] - base["VmRSS"], "file_backed_after_mib": after["RssFile"] - base["RssFile"],
                  "seconds": seconds}))
"""


def measure(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, cwd=ROOT, check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def tiny_files(folder: Path) -> list[Path]:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(ROOT / "tests" / "train"))
    from tiny_sdxl import build_tiny_sdxl_single_file

    single = build_tiny_sdxl_single_file(folder)
    ckpt = single.with_suffix(".ckpt")
    state = load_file(str(single))
    torch.save({"state_dict": state}, ckpt)  # same stem: the same sgm yaml describes it
    # CLIP's full 49408-token tables (200 MB in fp16): enough weight to tell one copy from two over the libraries'
    # own few tens of MB.
    vocab = folder / "tiny-sdxl-vocab.safetensors"
    for key in [k for k in state if k.endswith(("token_embedding.weight",))]:
        state[key] = torch.randn(49408, state[key].shape[1], dtype=torch.float16)
    save_file(state, str(vocab))
    shutil.copy(single.with_suffix(".yaml"), vocab.with_suffix(".yaml"))
    return [single, ckpt, vocab]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--tiny", action="store_true", help="build and measure the tests' tiny SDXL files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = list(args.models) + (tiny_files(Path(tmp)) if args.tiny else [])
        if not models:
            parser.error("give a single-file SDXL checkpoint, or --tiny")
        print("| file | weights as loaded (MiB) | anonymous peak | VmHWM rise | file-backed after | s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for path in models:
            r = measure(path)
            print(f"| {path.name} | {r['weights_mib']:.0f} | {r['anon_peak_mib']:.0f} | {r['hwm_mib']:.0f} | "
                  f"{r['file_backed_after_mib']:.0f} | {r['seconds']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
