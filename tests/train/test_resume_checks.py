"""Resuming guards: another CLIP skip is refused (names both values), another checkpoint warns."""

from __future__ import annotations

import random

import pytest

from embed_studio.errors import UserInputError
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.train.create import create_embedding
from embed_studio.train.loop import train
from embed_studio.train.prompts import PromptOptions, build_prompt, escape_brackets


def test_resume_with_another_clip_skip_is_refused(tmp_path, backend, make_config):
    target = tmp_path / "emb.pt"
    save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
    train(make_config(target, max_steps=2, clip_skip=2), backend)
    before = load_embedding(target)
    with pytest.raises(UserInputError, match=r"CLIP skip 2.*CLIP skip 1"):
        train(make_config(target, max_steps=4, clip_skip=1), backend)
    after = load_embedding(target)
    assert after.step == 2 and after.vectors.equal(before.vectors)  # nothing trained, nothing lost
    assert train(make_config(target, max_steps=3, clip_skip=2), backend).step == 3


def test_resume_on_another_checkpoint_warns(tmp_path, backend, make_config):
    target = tmp_path / "emb.pt"
    data = create_embedding(backend, "emb", "black hair", 2)
    data.step, data.sd_checkpoint, data.sd_checkpoint_name = 5, "0123456789", "other-model"
    data.extra["embed_studio"] = {"clip_skip": 1}
    save_embedding(data, target)
    # A diffusers folder has no single-file hash; give this one the identity a checkpoint file would have.
    backend.checkpoint_hash, backend.checkpoint_name = "abcdef0123", "tiny"
    messages = []
    train(make_config(target, max_steps=6), backend, log=messages.append)
    assert any("other-model [0123456789]" in m and "tiny [abcdef0123]" in m for m in messages), messages
    assert load_embedding(target).sd_checkpoint == "abcdef0123"  # the file now records where it continued


@pytest.mark.parametrize(
    "caption, escaped",
    [
        ("zangoose_(pokemon), red eyes", r"zangoose_\(pokemon\), red eyes"),
        (r"already \(escaped\)", r"already \(escaped\)"),
        ("[wip]", r"\[wip\]"),
    ],
)
def test_filewords_brackets_are_escaped(caption, escaped):
    assert escape_brackets(caption) == escaped
    options = PromptOptions(shuffle_tags=False)
    assert build_prompt("[name], [filewords]", caption, "emb", options, random.Random(0)) == f"emb, {escaped}"
    raw = PromptOptions(shuffle_tags=False, escape_brackets=False)
    assert build_prompt("[filewords]", caption, "emb", raw, random.Random(0)) == caption
