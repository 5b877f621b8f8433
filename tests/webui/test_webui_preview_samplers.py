"""In the real WebUI: previews draw with any of the WebUI's samplers and schedule types, through its own txt2img
processing, and a name it does not have is refused before a run starts, in one line."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from PIL import Image
from webui_helpers import run_job, write_mixed_aspect_dataset

pytestmark = pytest.mark.webui


def _body(name: str, dataset, **extra) -> dict:
    return {
        "kind": "embedding", "target": name, "dataset": str(dataset), "width": 64, "height": 64, "bucket_step": 32,
        "grad_accum": 1, "batch_size": 2, "max_steps": 2, "save_every": 0, "preview_every": 2, "preview_steps": 3,
        "preview_seed": 5, "preview_prompt": f"{name}, red eyes", "preview_with_embedding": False, "seed": 3,
    } | extra  # fmt: skip


def _infotext(path) -> str:
    with Image.open(path) as image:
        return image.info.get("parameters", "")


def test_previews_draw_with_the_webuis_sampler_and_schedule_type(webui, name, tmp_path):
    dataset = write_mixed_aspect_dataset(tmp_path)
    run_job(webui, "create", {"kind": "embedding", "name": name, "init_text": "red eyes", "n_vectors": 2})
    # The main preview with a sampler and schedule type the old four lacked; a second prompt line, same prompt
    # and seed, with another sampler; a third in the standalone table's spelling (sampler and schedule type in one).
    lines = [f'--prompt "{name}, red eyes" --sampler_name Euler --scheduler Automatic',
             "--sampler_name dpmpp_2m_karras --scheduler Automatic"]  # fmt: skip
    body = _body(
        name, dataset, preview_sampler="DPM++ 2M SDE", preview_scheduler="Karras", preview_prompts="\n".join(lines),
    )  # fmt: skip
    run_job(webui, "train", body)
    images = webui.dir / "textual_inversion" / name / "images"
    main, other = images / f"{name}-2.png", images / f"{name}-2-1.png"
    info = _infotext(main)
    for part in ("Steps: 3", "Sampler: DPM++ 2M SDE", "Schedule type: Karras", "Seed: 5"):
        assert part in info, info
    other_info = _infotext(other)
    assert "Sampler: Euler," in other_info and "Seed: 5" in other_info and "Karras" not in other_info, other_info
    third = _infotext(images / f"{name}-2-2.png")
    assert "Sampler: DPM++ 2M," in third and "Schedule type: Karras" in third, third
    a = np.asarray(Image.open(main).convert("RGB"), dtype=np.float32)
    b = np.asarray(Image.open(other).convert("RGB"), dtype=np.float32)
    assert a.shape == b.shape and np.abs(a - b).mean() > 1, "two samplers drew the same image"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"preview_sampler": "DPM++ 9M"}, ["'DPM++ 9M'", "dpmpp_3m_sde", "restart", "euler_a"]),
        ({"preview_sampler": "euler", "preview_scheduler": "Karas"}, ["'Karas'", "Karras", "Align Your Steps"]),
        ({"preview_prompts": "--prompt x --sampler_name Restrat"}, ["line 1", "'Restrat'", "restart"]),
    ],
)
def test_an_unknown_sampler_or_schedule_type_is_refused_in_one_line(webui, name, tmp_path, fields, words):
    dataset = write_mixed_aspect_dataset(tmp_path)
    run_job(webui, "create", {"kind": "embedding", "name": name, "init_text": "red eyes", "n_vectors": 2})
    r = requests.post(f"{webui.url}/embed-studio/v1/train", json=_body(name, dataset, **fields), timeout=60)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "\n" not in detail and "Traceback" not in detail and all(w in detail for w in words), detail
    assert not (webui.dir / "textual_inversion" / name).exists()  # refused before a run started
