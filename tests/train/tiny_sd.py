"""Builds a tiny random-weight SD-architecture diffusers folder (real diffusers/transformers classes) for tests and bench."""

from __future__ import annotations

import json
from pathlib import Path

# Whole words the tiny BPE vocabulary knows; anything else falls back to single characters.
WORDS = [
    "a",
    "photo",
    "of",
    "the",
    "black",
    "hair",
    "red",
    "eyes",
    "girl",
    "1girl",
    "solo",
    "smile",
    "dress",
    "blue",
    "sky",
    "cat",
    "dog",
    "picture",
    "painting",
    "art",
    "by",
    "rendering",
    "cropped",
    "clean",
    "uploaded",
    "on",
]


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP byte-level alphabet: printable bytes map to themselves, the rest to code points from 256 up.
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, (chr(c) for c in chars), strict=True))


def write_tokenizer(folder: Path, words: list[str] = WORDS) -> None:
    """vocab.json + merges.txt for a CLIP BPE tokenizer whose merges spell out `words` left to right."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            merged = pair[0] + pair[1]
            if pair not in merges:
                merges.append(pair)
                if merged not in vocab_list:
                    vocab_list.append(merged)
            symbols = [merged] + symbols[2:]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )


def randomise_norms(model) -> None:
    """LayerNorm/GroupNorm away from weight 1, bias 0: a fresh norm makes padding windows average to exactly 0.0,
    which real checkpoints never do and which hides (or fakes) numerical bugs."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and module.weight is not None:
                module.weight.copy_(1.0 + 0.2 * torch.randn_like(module.weight))
                module.bias.copy_(0.2 * torch.randn_like(module.bias))


def build_tiny_sd(
    folder: Path, prediction_type: str = "epsilon", size: str = "tiny", seed: int = 0, family: str = "sd1"
) -> Path:
    """Save a StableDiffusionPipeline with tiny random weights as a diffusers folder; returns the folder.

    family="sd2" gives the SD2 shape where it matters to the trainer: 1024-wide text (OpenCLIP), "!" as the pad
    token, linear attention projections.
    """
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    tok_dir = folder / "_tok"
    write_tokenizer(tok_dir)
    pad = "!" if family == "sd2" else "<|endoftext|>"
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), pad_token=pad)
    hidden = 1024 if family == "sd2" else 32 if size == "tiny" else 768
    channels = (8, 16) if size == "tiny" else (320, 640, 1280, 1280)
    groups = 8 if size == "tiny" else 32
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2 if size == "tiny" else 12,
            num_attention_heads=4 if size == "tiny" else 12,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    if size == "tiny":
        down = ("CrossAttnDownBlock2D", "DownBlock2D")
        up = ("UpBlock2D", "CrossAttnUpBlock2D")
        heads = 2
    else:
        down = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
        up = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
        heads = 8
    unet = UNet2DConditionModel(
        sample_size=8 if size == "tiny" else 64,
        in_channels=4,
        out_channels=4,
        layers_per_block=1 if size == "tiny" else 2,
        block_out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=hidden,
        attention_head_dim=heads,
        norm_num_groups=groups,
        use_linear_projection=family == "sd2",
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 8, 8, 8) if size == "tiny" else (128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8 if size == "tiny" else 32,
    )
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        num_train_timesteps=1000,
        prediction_type=prediction_type,
        steps_offset=1,
        clip_sample=False,
    )
    for model in (text_encoder, unet, vae):
        randomise_norms(model)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder
