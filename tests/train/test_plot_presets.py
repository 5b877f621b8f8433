"""`embed-studio plot`, named presets (library, CLI, Train tab) and a save with previews at each cosine cycle's end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from embed_studio.cli import main
from embed_studio.errors import UserInputError
from embed_studio.train.presets import list_presets, load_preset, save_preset

GREEN = (21, 128, 61)  # the validation line's colour in lossplot


def _write_log(folder, validation=True):
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{s},0,{1 / s:.4f},0.001,1.0\n" for s in range(1, 21))
    (folder / "loss.csv").write_text("step,epoch,loss,lr,images_per_s\n" + rows, encoding="utf-8")
    if validation:
        val = "".join(f"{s},{0.5 + abs(s - 10) / 40:.4f},\n" for s in range(5, 21, 5))
        (folder / "validation.csv").write_text("step,val_loss,best_step\n" + val, encoding="utf-8")


def _green(path) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(GREEN)).sum(axis=-1) < 40).sum())


def test_plot_command_writes_the_png(tmp_path, capsys):
    run = tmp_path / "logs" / "mychar"
    _write_log(run)
    assert main(["plot", str(run)]) == 0
    out = run / "loss.png"
    assert capsys.readouterr().out.strip() == str(out)
    assert Image.open(out).size == (700, 350) and _green(out) > 50  # the validation line is drawn
    assert main(["plot", str(run / "loss.csv"), "--out", str(tmp_path / "big.png"), "--size", "10x5"]) == 0
    assert Image.open(tmp_path / "big.png").size == (1000, 500)
    plain = tmp_path / "logs" / "plain"
    _write_log(plain, validation=False)
    assert main(["plot", str(plain)]) == 0 and _green(plain / "loss.png") == 0
    assert main(["plot", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_presets_round_trip_and_refuse_bad_input(tmp_path):
    folder = tmp_path / "_presets"
    path = save_preset(folder, "kohya-ish v2", {"min_snr_gamma": 5.0, "flip_augment": True, "model": "/not/kept"})
    assert path.parent == folder and list_presets(folder) == ["kohya-ish v2"]
    assert load_preset(folder, "kohya-ish v2") == {"min_snr_gamma": 5.0, "flip_augment": True}
    for bad in ("../escape", "", ".hidden", "a/b"):
        with pytest.raises(UserInputError, match="not usable"):
            save_preset(folder, bad, {})
    with pytest.raises(UserInputError, match="No preset named 'other'"):
        load_preset(folder, "other")
    path.write_text(json.dumps({"format": 1, "settings": {"flip_augment": "yes"}}))
    with pytest.raises(UserInputError, match="flip_augment is 'yes'"):
        load_preset(folder, "kohya-ish v2")
    path.write_text(json.dumps({"format": 1, "settings": {"dataset": "/etc"}}))
    with pytest.raises(UserInputError, match="does not know: dataset"):
        load_preset(folder, "kohya-ish v2")


def test_cli_saves_and_uses_a_preset(tmp_path, tiny_model, dataset, backend):
    from embed_studio.formats.embedding import save_embedding
    from embed_studio.train.create import create_embedding

    emb_dir = tmp_path / "embeddings"
    emb_dir.mkdir()
    save_embedding(create_embedding(backend, "mychar", "red eyes", 2), emb_dir / "mychar.pt")
    common = ["train", "embedding", "--model", str(tiny_model), "--dataset", str(dataset), "--name", "mychar"]
    common += ["--dir", str(emb_dir), "--log-dir", str(tmp_path / "logs" / "mychar")]
    saved = [*common, "--min-snr-gamma", "5", "--flip-augment", "--width", "64", "--height", "64"]
    assert main([*saved, "--bucket-step", "32", "--save-preset", "small"]) == 0
    assert (tmp_path / "logs" / "_presets" / "small.json").is_file()
    assert not (tmp_path / "logs" / "mychar").exists()  # saving a preset trains nothing
    assert main([*common, "--preset", "small", "--steps", "1", "--save-every", "0", "--preview-every", "0"]) == 0
    config = json.loads((tmp_path / "logs" / "mychar" / "config.json").read_text())
    assert (config["min_snr_gamma"], config["flip_augment"], config["width"], config["max_steps"]) == (5.0, True, 64, 1)


def test_train_tab_saves_and_loads_presets(tmp_path):
    import gradio as gr

    from embed_studio.backends.provider import StandaloneProvider
    from embed_studio.ui import train_form as form
    from embed_studio.ui.host import UiHost
    from embed_studio.ui.train_tab import TrainTab

    provider = StandaloneProvider(tmp_path / "out")
    host = UiHost(name="standalone", models_dir=tmp_path, output_dir=tmp_path, backend_provider=provider)
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
    names = list(tab.fields)
    values = [form.default(n) for n in names]
    values[names.index("noise_offset")] = 0.07
    values[names.index("optimizer")] = "adamw"
    values[names.index("max_steps")] = 1234.0  # gr.Number gives floats
    choices, message = tab._save_preset("dark images", *values)
    assert "dark images" in message and choices["choices"] == ["dark images"]
    with pytest.raises(gr.Error, match="not a number"):
        tab._save_preset("broken", *[("x" if n == "noise_offset" else v) for n, v in zip(names, values, strict=True)])
    loaded = tab._load_preset("dark images")
    by_name = dict(zip([*names, "info"], loaded, strict=True))
    assert by_name["noise_offset"] == 0.07 and by_name["max_steps"] == 1234
    assert isinstance(by_name["name"], dict)  # per-run fields keep what the form shows (gr.update())
    assert "Loaded preset" in loaded[-1]


def test_save_and_preview_at_each_cosine_cycle_end(tmp_path, backend, make_config):
    from embed_studio.formats.embedding import save_embedding
    from embed_studio.train.create import create_embedding
    from embed_studio.train.loop import train

    results = []
    for each_cycle in (False, True):
        target = tmp_path / str(each_cycle) / "emb.pt"
        target.parent.mkdir()
        save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
        config = make_config(
            target, lr_scheduler="cosine", cosine_cycle_steps=2, max_steps=5, save_each_cycle=each_cycle,
            preview_with_embedding=False, preview_width=32, preview_height=32,
        )  # fmt: skip
        results.append(train(config, backend))
    assert results[0].copies == [] and results[0].previews == []
    assert [p.rsplit("-", 1)[1] for p in results[1].copies] == ["2.pt", "4.pt"]
    assert [p.rsplit("-", 1)[1] for p in results[1].previews] == ["2.png", "4.png"]
