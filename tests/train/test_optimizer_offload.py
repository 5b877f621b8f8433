"""The optimizer's state leaves the GPU while previews are drawn and comes back exactly as it was."""

from __future__ import annotations

import gc

import pytest
import torch

from embed_studio.backends.standalone import StandaloneBackend
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.formats.optim import load_optimizer_state
from embed_studio.train.create import create_embedding, create_hypernetwork
from embed_studio.train.loop import train
from embed_studio.train.optimizers import move_optimizer_state, optimizer_state_on_cpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _stepped_adamw(device: str, size: int = 16) -> torch.optim.AdamW:
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(size, generator=generator).to(device).requires_grad_(), torch.randn(3, 4).to(device)]
    params[1].requires_grad_()
    optimizer = torch.optim.AdamW(params, lr=0.1)
    for _ in range(2):
        sum((p**2).sum() for p in params).backward()
        optimizer.step()
        optimizer.zero_grad()
    return optimizer


def _state_tensors(optimizer: torch.optim.Optimizer) -> dict[tuple[int, str], torch.Tensor]:
    return {
        (i, key): value
        for i, state in enumerate(optimizer.state.values())
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }


def test_every_state_tensor_moves_to_the_target_device_and_its_place_is_returned():
    optimizer = _stepped_adamw("cpu")
    before = _state_tensors(optimizer)
    assert len(before) == 6  # step, exp_avg, exp_avg_sq of each parameter
    where = move_optimizer_state(optimizer, "meta")
    after = _state_tensors(optimizer)
    assert set(after) == set(before) == set(where)
    for key, tensor in after.items():
        assert tensor.device.type == "meta", key
        assert tensor.dtype == before[key].dtype and tensor.shape == before[key].shape
        assert where[key] == before[key].device


def test_state_already_on_the_target_stays_the_same_tensors():
    optimizer = _stepped_adamw("cpu")
    before = _state_tensors(optimizer)
    with optimizer_state_on_cpu(optimizer):
        inside = _state_tensors(optimizer)
    assert all(inside[k] is before[k] for k in before)
    assert all(_state_tensors(optimizer)[k] is before[k] for k in before)


def test_previews_leave_the_trained_vectors_and_optimizer_state_as_without_them(tmp_path, backend, make_config):
    runs = {}
    for previews in (0, 1):
        target = tmp_path / f"p{previews}" / "emb.pt"
        target.parent.mkdir()
        save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
        result = train(make_config(target, max_steps=3, preview_every=previews, preview_with_embedding=False), backend)
        assert len(result.previews) == 3 * previews
        saved = load_embedding(target)
        runs[previews] = (saved.vectors, load_optimizer_state(target, saved.checksum()))
    assert torch.equal(runs[0][0], runs[1][0])
    state0, state1 = (r[1]["state"] for r in (runs[0], runs[1]))
    for index in state0:
        for key in state0[index]:
            assert torch.equal(state0[index][key], state1[index][key]), (index, key)


@needs_cuda
def test_state_goes_to_pinned_cpu_memory_and_back_bit_identical_on_cuda():
    optimizer = _stepped_adamw("cuda", size=8 * 2**20)  # 32 MB parameter: two 32 MB AdamW moments
    before = {k: v.clone() for k, v in _state_tensors(optimizer).items()}
    devices = {k: v.device for k, v in _state_tensors(optimizer).items()}
    torch.cuda.synchronize()
    allocated = torch.cuda.memory_allocated()
    with optimizer_state_on_cpu(optimizer):
        inside = _state_tensors(optimizer)
        assert all(t.device.type == "cpu" for t in inside.values())
        assert all(t.is_pinned() for k, t in inside.items() if devices[k].type == "cuda")
        assert torch.cuda.memory_allocated() <= allocated - 2 * 32 * 2**20
    after = _state_tensors(optimizer)
    for key, tensor in after.items():
        assert tensor.device == devices[key] and tensor.dtype == before[key].dtype
        assert torch.equal(tensor, before[key]), key
    assert torch.cuda.memory_allocated() == allocated


class _MeasuringPreviews(StandaloneBackend):
    """A real backend that notes where the optimizer's state tensors are as each preview starts."""

    seen: list

    def render_preview(self, request, trigger=None, vectors=None):
        optimizers = [o for o in gc.get_objects() if isinstance(o, torch.optim.Optimizer)]
        devices = {t.device.type for o in optimizers for t in _state_tensors(o).values() if t.dim()}
        self.seen.append(devices)
        return super().render_preview(request, trigger, vectors)


@needs_cuda
def test_a_cuda_run_draws_its_previews_with_the_optimizer_state_on_the_cpu(tmp_path, tiny_model, make_config):
    gc.collect()  # no optimizer of an earlier test may linger with its state on the GPU
    backend = _MeasuringPreviews.load(tiny_model, "cuda")
    backend.seen = []
    target = tmp_path / "hn.pt"
    from embed_studio.formats.hypernetwork import save_hypernetwork

    # A wide hypernetwork: its AdamW moments are large next to the tiny model.
    hypernetwork = create_hypernetwork("hn", backend.context_sizes, layer_structure=[1, 64, 1], backend=backend)
    save_hypernetwork(hypernetwork, target)
    config = make_config(target, kind="hypernetwork", max_steps=2, preview_every=1, precision="fp32")
    train(config, backend)
    assert backend.seen == [{"cpu"}, {"cpu"}]
