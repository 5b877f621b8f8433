"""The standalone backend's prompt handling: the WebUI's emphasis syntax, 75-token windows, vector slots, CLIP skip."""

import pytest
import torch

from embed_studio.backends.base import Backend
from embed_studio.backends.standalone import CHUNK_TOKENS, parse_emphasis


def test_backend_satisfies_the_protocol(backend):
    assert isinstance(backend, Backend)


def test_emphasis_syntax():
    assert parse_emphasis("a (b) c") == [("a ", 1.0), ("b", 1.1), (" c", 1.0)]
    assert parse_emphasis("(a:1.5), [b]")[0] == ("a", 1.5)
    assert parse_emphasis("[b]")[0][1] == 1 / 1.1
    assert parse_emphasis(r"black \(cat\)") == [("black (cat)", 1.0)]  # tagger-escaped brackets are literal
    assert parse_emphasis("((a))")[0][1] == 1.1 * 1.1


def test_trigger_becomes_vector_slots_and_long_prompts_get_windows(backend):
    tokens = backend.tokenize("a photo of mychar, black hair", "mychar", 3)
    assert [s[2] for s in tokens.slots] == [0, 1, 2]
    assert all(len(c) == CHUNK_TOKENS + 2 for c in tokens.chunks)
    long = backend.tokenize(", ".join(["black hair"] * 40) + ", mychar", "mychar", 3)
    assert len(long.chunks) == 2
    assert long.slots[0][0] == 1  # the vectors moved whole into the second window


def test_vectors_reach_the_conditioning_and_get_gradients(backend):
    tokens = [backend.tokenize("mychar, smile", "mychar", 2), backend.tokenize("smile", "mychar", 2)]
    vectors = torch.randn(2, backend.token_dim, requires_grad=True)
    cond = backend.encode_prompts(tokens, vectors)
    assert cond.shape == (2, CHUNK_TOKENS + 2, backend.token_dim)
    cond[0].sum().backward()
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0
    other = backend.encode_prompts(tokens, torch.zeros(2, backend.token_dim))
    assert not torch.allclose(other[0], cond[0])
    assert torch.allclose(other[1], cond[1])  # no trigger, no effect


def test_emphasis_and_clip_skip_change_the_conditioning(backend):
    plain = backend.encode_prompts([backend.tokenize("black hair, smile")])
    weighted = backend.encode_prompts([backend.tokenize("(black hair:1.5), smile")])
    assert plain.shape == weighted.shape and not torch.allclose(plain, weighted)
    backend.configure("fp32", clip_skip=2)
    skipped = backend.encode_prompts([backend.tokenize("black hair, smile")])
    assert not torch.allclose(plain, skipped)


def test_a_prompt_encodes_the_same_alone_and_in_a_batch(backend):
    # txt2img encodes one prompt; training batches several. Emphasis normalisation must not mix them.
    weighted = backend.tokenize("(black hair:1.5), smile")
    other = backend.tokenize("[red eyes], " + " ".join(["a"] * 80))  # two windows, other emphasis
    alone = backend.encode_prompts([weighted])
    batched = backend.encode_prompts([weighted, other])
    assert torch.allclose(batched[0, : alone.shape[1]], alone[0], atol=1e-5)
    assert torch.allclose(batched[1], backend.encode_prompts([other])[0], atol=1e-5)


def test_long_prompt_breaks_at_a_recent_comma(backend):
    # 73 tokens of "x" words then ", smile dress ..." : the window breaks after the comma, not mid-phrase.
    words = " ".join(["a"] * 73) + ", blue dress cat dog"
    tokens = backend.tokenize(words)
    first = [t for t in tokens.chunks[0][1:-1] if t != backend.tokenizer.pad_token_id]
    assert first[-1] == backend._comma_id
    assert len(tokens.chunks) == 2


def test_break_starts_a_new_window(backend):
    tokens = backend.tokenize("smile BREAK blue sky")
    assert len(tokens.chunks) == 2
    assert len(backend.tokenize("smile, blue sky").chunks) == 1


def test_emphasis_restore_is_finite_where_a_window_mean_is_zero():
    # A window of padding through a norm with zero bias averages to exactly 0.0 (seen with transformers 5):
    # the WebUI's restore, original_mean / new_mean, then gives 0/0 = NaN for the whole prompt.
    from embed_studio.backends.standalone import restore_mean_factor

    windows = torch.tensor([[1.0, -1.0], [2.0, -2.0]]).reshape(1, 1, 2, 2)
    weighted = windows * torch.tensor([1.5, 1.0]).reshape(1, 1, 2, 1)
    original = windows.mean(dim=(2, 3), keepdim=True)
    factor = restore_mean_factor(original, weighted.mean(dim=(2, 3), keepdim=True), weighted)
    assert torch.isfinite(factor).all() and factor.item() == 1.0
    # An ordinary window keeps the WebUI's factor exactly.
    windows = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    weighted = windows * 2
    factor = restore_mean_factor(
        windows.mean(dim=(2, 3), keepdim=True), weighted.mean(dim=(2, 3), keepdim=True), weighted
    )
    assert factor.item() == pytest.approx(0.5)
