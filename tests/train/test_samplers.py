"""Previews with every diffusers scheduler the model takes, named like the WebUI's samplers."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embed_studio.backends.base import PreviewRequest
from embed_studio.backends.samplers import (
    NOT_FOR_SD,
    SAMPLERS,
    require_sampler,
    sampler_installed,
    standalone_sampler,
)
from embed_studio.backends.standalone import available_samplers
from embed_studio.errors import UserInputError

sys.path.insert(0, str(Path(__file__).parents[1]))
from cli_process import assert_one_line_error, run_cli  # noqa: E402


def _scheduler_config(tiny_model) -> dict:
    return json.loads((tiny_model / "scheduler" / "scheduler_config.json").read_text())


def test_every_scheduler_diffusers_lists_as_compatible_is_offered(tiny_model, backend):
    from diffusers import DDPMScheduler

    compatible = {c.__name__ for c in DDPMScheduler.from_config(_scheduler_config(tiny_model)).compatibles}
    offered = backend.samplers()
    assert offered == available_samplers(_scheduler_config(tiny_model))
    # Every compatible class (but the EDM ones) has a name, and every installed one is offered.
    assert compatible - NOT_FOR_SD <= {s.scheduler for s in SAMPLERS.values()}
    expected = {n for n, s in SAMPLERS.items() if s.scheduler in compatible - NOT_FOR_SD and sampler_installed(n)}
    assert set(offered) == expected
    assert len({SAMPLERS[n].scheduler for n in offered}) >= 12  # not the four of before
    assert {"euler_a", "euler", "ddim", "dpmpp_2m", "unipc", "heun", "dpm2_a", "plms"} <= set(offered)


def _draw(backend, sampler: str) -> np.ndarray:
    request = PreviewRequest(prompt="a photo of black hair", steps=3, seed=3, width=64, height=64, sampler=sampler)
    return np.asarray(backend.render_preview(request), dtype=np.float32)


def test_two_compatible_schedulers_draw_different_images(backend):
    backend.configure("fp32")
    unipc, karras = _draw(backend, "unipc"), _draw(backend, "DPM++ 2M Karras")
    assert np.isfinite(unipc).all() and np.isfinite(karras).all()
    assert unipc.std() > 1 and karras.std() > 1  # a NaN latent decodes to one flat colour
    assert np.abs(unipc - karras).mean() > 1
    assert np.array_equal(unipc, _draw(backend, "unipc"))  # the same name draws the same image


@pytest.mark.parametrize("sampler", available_samplers())
def test_each_offered_sampler_draws_an_image(backend, sampler):
    backend.configure("fp32")
    image = _draw(backend, sampler)
    assert image.shape == (64, 64, 3) and image.std() > 1


def test_an_unknown_sampler_is_one_line_naming_the_valid_ones(make_config, tmp_path):
    with pytest.raises(UserInputError) as e:
        make_config(tmp_path / "e.pt", preview_sampler="euler_b").validate()
    assert "\n" not in str(e.value) and "unipc" in str(e.value) and "euler_a" in str(e.value)
    assert require_sampler("DPM++ 2M SDE Karras") == "dpmpp_2m_sde_karras"


def test_the_cli_takes_a_new_sampler_and_refuses_a_wrong_one_in_one_line(tmp_path, tiny_model, dataset):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=tmp_path)

    made = cli("create", "embedding", "emb", "--model", str(tiny_model), "--init-text", "black hair", "--vectors", "2")
    assert made.returncode == 0, made.stderr
    common = ["train", "embedding", "--model", str(tiny_model), "--dataset", str(dataset), "--name", "emb",
              "--steps", "1", "--gradient-accumulation", "1", "--width", "64", "--height", "64",
              "--bucket-step", "32", "--save-every", "0", "--preview-every", "1", "--preview-steps", "2",
              "--no-preview-with-embedding"]  # fmt: skip
    assert_one_line_error(cli(*common, "--preview-sampler", "euler_b"), "euler_b", "dpmpp_2m_karras", "unipc")
    ran = cli(*common, "--preview-sampler", "heun")
    assert ran.returncode == 0, ran.stderr
    assert "failed" not in ran.stderr  # no "preview at step 1 failed" warning
    assert (tmp_path / "textual_inversion" / "emb" / "images" / "emb-1.png").is_file()


def test_the_karras_schedule_type_draws_the_samplers_karras_row(backend, make_config, tmp_path):
    backend.configure("fp32")
    request = PreviewRequest(prompt="a photo of black hair", steps=3, seed=3, width=64, height=64)
    with_type = backend.render_preview(dataclasses.replace(request, sampler="dpmpp_2m", scheduler="Karras"))
    row = backend.render_preview(dataclasses.replace(request, sampler="dpmpp_2m_karras"))
    plain = backend.render_preview(dataclasses.replace(request, sampler="dpmpp_2m"))
    assert np.array_equal(np.asarray(with_type), np.asarray(row))
    assert np.abs(np.asarray(with_type, dtype=np.float32) - np.asarray(plain, dtype=np.float32)).mean() > 1
    assert standalone_sampler("DPM++ 2M SDE", "Karras") == "dpmpp_2m_sde_karras"
    make_config(tmp_path / "e.pt", preview_sampler="euler", preview_scheduler="karras").validate()


@pytest.mark.parametrize(
    ("sampler", "scheduler", "words"),
    [
        ("euler", "Exponential", ["'Exponential'", "Automatic or Karras"]),
        ("unipc", "Karras", ["no unipc", "dpmpp_2m"]),
    ],
)
def test_a_schedule_type_the_standalone_cannot_draw_is_one_line(make_config, tmp_path, sampler, scheduler, words):
    with pytest.raises(UserInputError) as e:
        make_config(tmp_path / "e.pt", preview_sampler=sampler, preview_scheduler=scheduler).validate()
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
