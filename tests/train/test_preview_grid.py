"""Several preview prompts with their own settings, a grid per saved step, and `embed-studio preview` over steps."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from embed_studio.backends.base import PreviewRequest
from embed_studio.errors import UserInputError
from embed_studio.formats.embedding import save_embedding
from embed_studio.jobs import Job
from embed_studio.progress import status_line
from embed_studio.train.create import create_embedding
from embed_studio.train.preview_grid import parse_preview_prompts, step_order


def test_preview_prompt_lines():
    base = PreviewRequest(prompt="p", steps=20, seed=3, width=512, height=512)
    text = """
        mychar smiling
        --prompt "mychar, beach" --seed 5 --sampler_name "DPM++ 2M" --steps 25 --cfg_scale 6 --width 512 --height 768
    """
    plain, options = parse_preview_prompts(text, base)
    assert (plain.prompt, plain.seed, plain.steps) == ("mychar smiling", 3, 20)
    assert (options.prompt, options.seed, options.sampler, options.steps) == ("mychar, beach", 5, "DPM++ 2M", 25)
    assert (options.cfg_scale, options.width, options.height) == (6.0, 512, 768)
    for bad, message in [
        ('--prompt "open', "close the quotes"),
        ("--prompt x --colour red", "not an option"),
        ("--prompt x --seed five", "not a number"),
        ("--prompt x --sampler_name Restart", "not one of"),
        ("--prompt x --width 100", "multiples of 8"),
    ]:
        with pytest.raises(UserInputError, match=message):
            parse_preview_prompts(bad, base)


def test_saved_steps_in_step_order(tmp_path):
    names = ["c-1000.pt", "c.pt", "c-250.pt", "c-50.pt"]
    assert [p.name for p in step_order([tmp_path / n for n in names])] == ["c-50.pt", "c-250.pt", "c-1000.pt", "c.pt"]


def test_previews_with_several_prompts_make_a_grid(tmp_path, backend, make_config):
    from embed_studio.train.loop import train

    target = tmp_path / "emb.pt"
    save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
    prompts = "emb, smile\n--prompt emb --seed 9 --steps 3 --width 64 --height 64"
    config = make_config(
        target, max_steps=2, preview_every=2, preview_prompts=prompts, preview_width=32, preview_height=32,
        preview_with_embedding=False,
    )  # fmt: skip
    job = Job("train", lambda ctx: train(config, backend, ctx), total=2)
    lines: list[str] = []
    job.add_listener(lambda status: lines.append(status_line(status)))
    result = job.run()
    assert job.exception is None
    # The progress line counts the three drawings (the usual preview and the two extra prompts), then stops.
    drawn = [m[1] for line in lines if (m := re.search(r"drawing preview (\d/\d)", line))]
    assert list(dict.fromkeys(drawn)) == ["1/3", "2/3", "3/3"]
    assert "drawing preview" not in lines[-1]
    images = config.log_path / "images"
    assert [p.rsplit("/", 1)[1] for p in result.previews] == ["emb-2.png", "emb-2-grid.png"]
    first, second = Image.open(images / "emb-2-1.png"), Image.open(images / "emb-2-2.png")
    assert first.size == (32, 32) and second.size == (64, 64)  # each prompt its own size
    grid = Image.open(images / "emb-2-grid.png")
    assert grid.width > 3 * 32 and grid.height >= 64  # three cells side by side, as tall as the largest
    with pytest.raises(UserInputError, match="line 2"):
        make_config(target, preview_prompts="ok\n--prompt x --steps 0").validate()


def test_preview_command_renders_steps_by_prompts(tmp_path, tiny_model, backend, make_config, capsys):
    from embed_studio.cli import main
    from embed_studio.train.loop import train

    target = tmp_path / "mychar.pt"
    save_embedding(create_embedding(backend, "mychar", "black hair", 2), target)
    train(make_config(target, max_steps=3, save_every=1, lr="0.5"), backend)
    copies = tmp_path / "logs" / "mychar" / "embeddings"
    out = tmp_path / "grid.png"
    size = ["--width", "64", "--height", "64", "--steps", "2"]
    args = ["preview", str(copies), "--model", str(tiny_model), "--prompt", "mychar", "--prompt", "mychar, smile"]
    assert main([*args, *size, "--out", str(out)]) == 0
    grid = np.asarray(Image.open(out).convert("RGB")).astype(int)
    # Two saved steps (1 and 2) are two rows of two 64-pixel cells; label space on top and at the left.
    assert grid.shape[0] == 18 + 2 * 68
    cell = lambda r, c: grid[18 + r * 68 : 18 + r * 68 + 64, -(2 - c) * 68 : -(2 - c) * 68 + 64]  # noqa: E731
    assert np.abs(cell(0, 0) - cell(1, 0)).sum() > 0  # the steps' vectors differ, so do their images
    assert main(["preview", str(tmp_path / "none"), "--model", str(tiny_model), "--prompt", "x"]) == 1
    assert "does not exist" in capsys.readouterr().err
