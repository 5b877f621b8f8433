"""SDXL: models the standalone trainer cannot handle are refused by name, with what to do instead."""

import json

import torch
from safetensors.torch import save_file

from embed_studio.cli import main


def test_sdxl_folder_is_refused_by_create_and_train(tmp_path, tiny_sdxl, dataset, capsys):
    emb_dir = tmp_path / "embeddings"
    assert main(["create", "embedding", "xlchar", "--model", str(tiny_sdxl), "--dir", str(emb_dir)]) == 1
    err = capsys.readouterr().err
    assert "SDXL" in err and "Traceback" not in err
    assert not (emb_dir / "xlchar.pt").exists()
    code = main(
        ["train", "embedding", "--model", str(tiny_sdxl), "--dataset", str(dataset), "--name", "xlchar",
         "--dir", str(emb_dir), "--steps", "1"]
    )  # fmt: skip
    assert code == 1
    assert "SDXL" in capsys.readouterr().err


def test_other_pipelines_are_refused_by_name(tmp_path, capsys):
    from embed_studio.backends.standalone import StandaloneBackend
    from embed_studio.errors import FileFormatError

    folder = tmp_path / "sd3"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (folder / sub).mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    try:
        StandaloneBackend.load(folder, "cpu")
    except FileFormatError as e:
        assert "StableDiffusion3Pipeline" in str(e) and "1.x and 2.x" in str(e)
    else:
        raise AssertionError("an SD3 folder was loaded as SD 1.x")


def test_sdxl_single_file_is_refused(tmp_path, capsys):
    path = tmp_path / "xl.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.ones(4)}, str(path))
    assert main(["create", "embedding", "x", "--model", str(path), "--dir", str(tmp_path / "e")]) == 1
    assert "SDXL" in capsys.readouterr().err
