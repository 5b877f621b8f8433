"""The standalone backend's word-level token cache gives exactly the ids of tokenizing each prompt whole."""

from __future__ import annotations

import random

import pytest
from tiny_sd import WORDS, write_tokenizer

from embed_studio.backends.standalone import StandaloneBackend
from embed_studio.train.prompts import PromptOptions, build_prompt

# Booru-style tags, with what trips tokenizers: brackets that become escapes, kaomoji and punctuation runs
# (")," merges across the tag boundary in a real vocabulary), apostrophes, digits, HTML entities, non-ASCII.
TAGS = [
    "1girl", "solo", "black hair", "red eyes", "smile", "blue dress", "zangoose_(pokemon)", "looking at viewer",
    "^_^", ":3", ">_<", "d:", "o_o", "girl's room", "2boys", "holding cat", "black&white", "tom & jerry",
    "caf\u00e9", "\u03c9", "\u30b2\u30fc\u30e0", "t-shirt", "cat ears", "a  b", "dog\tsky", "#hashtag", "@artist",
    "100%", "x~y", "re:zero", "{braces}", "end,", "sky.",
]  # fmt: skip
TEMPLATES = [
    "a photo of [name], [filewords]",
    "[filewords], [name]",
    "(masterpiece:1.2), [name], [filewords], [lowres]",
    "[name] BREAK [filewords]",
    "[filewords] BREAK (([name])) BREAK art by someone",
    "((black hair)), [filewords], [name], \\(literal\\) (dress:0.8) [[faded]]",
]
# A vocabulary whose merges cross what the tags put side by side, so a wrong split changes the ids.
EXTRA_WORDS = ["),", "_(", ")", "^_^", ":3", ">_<", "'s", "&", "cafe", "pokemon", "zangoose", "ears", "viewer"]


@pytest.fixture
def rich_backend(backend, tmp_path):
    from transformers import CLIPTokenizer

    write_tokenizer(tmp_path / "tok", WORDS + EXTRA_WORDS)
    tokenizer = CLIPTokenizer(str(tmp_path / "tok" / "vocab.json"), str(tmp_path / "tok" / "merges.txt"))
    return StandaloneBackend(
        backend.unet, backend.vae, backend.text_encoder, tokenizer, backend.scheduler_config, "cpu"
    )


class _WholeText(StandaloneBackend):
    """The reference: every text piece goes through the tokenizer whole, as before the cache."""

    def text_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, truncation=False).input_ids)


def _prompts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    options = PromptOptions(shuffle_tags=True, tag_dropout=0.2)
    prompts = []
    for i in range(count):
        tags = rng.sample(TAGS, rng.randint(1, len(TAGS)))
        if i % 5 == 0:
            tags = tags * 4  # long prompts: several 75-token windows and comma backtracking
        options_i = PromptOptions(escape_brackets=i % 2 == 0) if i % 7 == 0 else options
        prompts.append(build_prompt(rng.choice(TEMPLATES), ", ".join(tags), "zango", options_i, rng))
    return prompts


def test_word_cache_ids_equal_whole_text_ids(rich_backend):
    tokenizer = rich_backend.tokenizer
    texts = [p.replace("BREAK", " ") for p in _prompts(300, seed=1)] + ["", "   ", "a,b", "x ,y", ", , ,"]
    for text in texts:
        assert rich_backend.text_ids(text) == tokenizer(text, add_special_tokens=False).input_ids, text
    assert rich_backend._word_ids  # the ASCII prompts went through the cache


def test_tokenize_with_cache_equals_whole_prompt_tokenization(rich_backend, backend):
    reference = _WholeText(
        rich_backend.unet, rich_backend.vae, rich_backend.text_encoder, rich_backend.tokenizer,
        rich_backend.scheduler_config, "cpu",
    )  # fmt: skip
    windows = set()
    for prompt in _prompts(300, seed=2):
        for trigger, n in (("zango", 3), (None, 0)):
            got = rich_backend.tokenize(prompt, trigger, n)
            assert got == reference.tokenize(prompt, trigger, n), prompt
            windows.add(len(got.chunks))
    assert max(windows) >= 3  # long prompts and BREAK really made several windows
    # The test model's own tokenizer too (what the trainer tests use).
    plain = _WholeText(backend.unet, backend.vae, backend.text_encoder, backend.tokenizer, backend.scheduler_config)
    for prompt in _prompts(100, seed=3):
        assert backend.tokenize(prompt, "zango", 2) == plain.tokenize(prompt, "zango", 2), prompt


def test_cache_is_bounded(rich_backend, monkeypatch):
    import embed_studio.backends.standalone as standalone

    monkeypatch.setattr(standalone, "WORD_CACHE_SIZE", 8)
    words = [f"w{i}" for i in range(40)]
    for i in range(0, 40, 4):
        text = " ".join(words[i : i + 4])
        assert rich_backend.text_ids(text) == rich_backend.tokenizer(text, add_special_tokens=False).input_ids
    assert 0 < len(rich_backend._word_ids) <= 8
