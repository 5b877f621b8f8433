"""Hypernetwork training: the file keeps the WebUI's keys and options, its optimizer sidecar, and resumes exactly."""

import torch

from embed_studio.formats.hypernetwork import file_shorthash, load_hypernetwork, save_hypernetwork
from embed_studio.formats.optim import load_optimizer_state
from embed_studio.train.create import create_hypernetwork
from embed_studio.train.loop import train


def _new_hypernetwork(backend, path, **options):
    data = create_hypernetwork(
        path.stem,
        backend.context_sizes,
        layer_structure="1, 2, 1",
        activation_func="relu",
        add_layer_norm=True,
        use_dropout=True,
        last_layer_dropout=True,
        seed=3,
        backend=backend,
        **options,
    )
    save_hypernetwork(data, path)
    return data


def test_train_hypernetwork_and_resume(tmp_path, backend, make_config):
    straight, split = tmp_path / "a" / "hn.pt", tmp_path / "b" / "hn.pt"
    for path in (straight, split):
        path.parent.mkdir()
        initial = _new_hypernetwork(backend, path)
    common = dict(kind="hypernetwork", lr="0.001", template="hypernetwork.txt")
    result = train(make_config(straight, max_steps=4, preview_every=4, **common), backend)
    assert result.step == 4 and len(result.previews) == 1

    saved = load_hypernetwork(straight)
    assert saved.step == 4
    assert saved.activation_func == "relu" and saved.is_layer_norm and saved.dropout_structure == [0, 0.3, 0]
    for size in backend.context_sizes:
        for before, after in zip(initial.layers[size], saved.layers[size], strict=True):
            assert list(before) == list(after)  # same WebUI keys: linear.0.weight, ...
            assert "linear.0.weight" in after
    changed = any(not torch.equal(initial.layers[32][0][k], saved.layers[32][0][k]) for k in saved.layers[32][0])
    assert changed
    assert load_optimizer_state(straight, file_shorthash(straight)) is not None
    from embed_studio.formats.torchfile import webui_safe_pt_problem

    assert webui_safe_pt_problem(straight) is None and webui_safe_pt_problem(f"{straight}.optim") is None
    # The backend is left without hypernetwork processors after training.
    assert not any(type(p).__name__ == "HypernetworkAttnProcessor" for p in backend.unet.attn_processors.values())

    train(make_config(split, max_steps=2, **common), backend)
    train(make_config(split, max_steps=4, **common), backend)
    resumed = load_hypernetwork(split)
    assert resumed.step == 4
    for size in backend.context_sizes:
        for a, b in zip(saved.layers[size], resumed.layers[size], strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)
