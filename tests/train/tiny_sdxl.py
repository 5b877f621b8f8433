"""Builds a tiny random-weight SDXL-architecture diffusers folder (real diffusers/transformers classes) for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiny_sd import randomise_norms, write_tokenizer

# The real SDXL widths where the file format and the conditioning depend on them; everything else is tiny.
CLIP_L_WIDTH = 768
CLIP_G_WIDTH = 1280


def build_tiny_sdxl(folder: Path, seed: int = 0, vae_scaling: float = 0.13025, sgm_shapes: bool = False) -> Path:
    """Save a StableDiffusionXLPipeline with tiny random weights as a diffusers folder; returns the folder.

    Both text encoders keep SDXL's widths (768 and 1280) so an embedding made here has the shapes the WebUI expects
    ([n, 768] clip_l, [n, 1280] clip_g); they have 2 layers each. The UNet takes the added time ids and the pooled
    1280-wide text embedding like SDXL's ("text_time" addition), with a 2048-wide cross-attention context.
    sgm_shapes: the shapes of tests/webui/tiny_sdxl/tiny-sdxl.yaml (32-channel groups, 64-wide text heads, 16-wide
    size embedding, OpenCLIP-G with GELU), so the folder converts to a single file that yaml describes.
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    tok_dir = folder / "_tok"
    write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer(
        str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), pad_token="<|endoftext|>", model_max_length=77
    )
    # SDXL's second tokenizer is the same BPE with "!" as padding (OpenCLIP pads with id 0).
    tokenizer_2 = CLIPTokenizer(
        str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), pad_token="!", model_max_length=77
    )

    def text_config(width: int, tok: CLIPTokenizer, **extra: Any) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=width,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=width // 64 if sgm_shapes else 4,
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **extra,
        )

    text_encoder = CLIPTextModel(text_config(CLIP_L_WIDTH, tokenizer))
    g_extra: dict[str, Any] = {"hidden_act": "gelu"} if sgm_shapes else {}
    text_encoder_2 = CLIPTextModelWithProjection(
        text_config(CLIP_G_WIDTH, tokenizer_2, projection_dim=CLIP_G_WIDTH, **g_extra)
    )
    channels, time_width = ((32, 64), 16) if sgm_shapes else ((8, 16), 8)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CLIP_L_WIDTH + CLIP_G_WIDTH,
        attention_head_dim=(2, 4),
        norm_num_groups=32 if sgm_shapes else 8,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_width,
        projection_class_embeddings_input_dim=6 * time_width + CLIP_G_WIDTH,
        transformer_layers_per_block=(1, 1) if sgm_shapes else (1, 2),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=(32,) * 4 if sgm_shapes else (8,) * 4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32 if sgm_shapes else 8,
        scaling_factor=vae_scaling,
        force_upcast=True,
    )
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        num_train_timesteps=1000,
        prediction_type="epsilon",
        steps_offset=1,
        timestep_spacing="leading",
    )
    for model in (text_encoder, text_encoder_2, unet, vae):
        randomise_norms(model)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder)
    return folder


# The sgm yaml the WebUI test checkpoint uses; build_tiny_sdxl(sgm_shapes=True) has the shapes it describes.
WEBUI_TINY_SDXL_YAML = Path(__file__).resolve().parents[1] / "webui" / "tiny_sdxl" / "tiny-sdxl.yaml"


def build_tiny_sdxl_single_file(folder: Path, seed: int = 0) -> Path:
    """A tiny SDXL checkpoint as model sites ship them: one fp16 .safetensors in the sgm (original) layout, with
    the WebUI test checkpoint's sgm .yaml beside it (its CLIP-L folder: the tokenizer). Built from a diffusers
    folder (folder/diffusers) by renaming every tensor to its sgm key; returns the .safetensors path."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    source = build_tiny_sdxl(folder / "diffusers", seed=seed, sgm_shapes=True)
    pipe = StableDiffusionXLPipeline.from_pretrained(source)
    state: dict[str, Any] = {}
    state.update({"model.diffusion_model." + k: v for k, v in _unet_to_sgm(pipe.unet).items()})
    state.update({"first_stage_model." + k: v for k, v in _vae_to_sgm(pipe.vae).items()})
    for key, value in pipe.text_encoder.state_dict().items():
        if not key.endswith("position_ids"):
            key = key if key.startswith("text_model.") else "text_model." + key
            state["conditioner.embedders.0.transformer." + key] = value
    state.update({"conditioner.embedders.1.model." + k: v for k, v in _open_clip_to_sgm(pipe.text_encoder_2).items()})
    path = folder / "tiny-sdxl.safetensors"
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}, str(path))
    yaml_text = WEBUI_TINY_SDXL_YAML.read_text(encoding="utf-8").replace("CLIP_L_DIR", str(source / "tokenizer"))
    path.with_suffix(".yaml").write_text(yaml_text, encoding="utf-8")
    return path


def _renamed(state: dict, prefixes: list[tuple[str, str]], parts: dict[str, str] | None = None) -> dict:
    """Every key under a diffusers prefix moved to its sgm prefix (the first match wins); `parts` renames the
    remainder's leading name (resnet layers). A key no prefix covers is an error: nothing may be dropped."""
    out = {}
    for key, value in state.items():
        for old, new in prefixes:
            if key.startswith(old):
                rest = key[len(old) :]
                for a, b in (parts or {}).items():
                    if rest.startswith(a):
                        rest = b + rest[len(a) :]
                        break
                out[new + rest] = value
                break
        else:
            raise KeyError(f"no sgm name for {key}")
    return out


def _unet_to_sgm(unet: Any) -> dict:
    levels, n = len(unet.config.block_out_channels), unet.config.layers_per_block
    prefixes = [
        ("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
        ("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2."),
        ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
        ("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]  # fmt: skip
    for i in range(levels):
        for j in range(n):
            block = 1 + i * (n + 1) + j
            prefixes += [(f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{block}.0."),
                         (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{block}.1.")]  # fmt: skip
        if i < levels - 1:
            prefixes.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (n + 1)}.0.op."))
        attention = unet.config.up_block_types[i].startswith("CrossAttn")
        for j in range(n + 1):
            block = i * (n + 1) + j
            prefixes += [(f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{block}.0."),
                         (f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{block}.1.")]  # fmt: skip
        if i < levels - 1:
            prefixes.append(
                (f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{i * (n + 1) + n}.{2 if attention else 1}.")
            )
    resnet = {"norm1.": "in_layers.0.", "conv1.": "in_layers.2.", "time_emb_proj.": "emb_layers.1.",
              "norm2.": "out_layers.0.", "conv2.": "out_layers.3.", "conv_shortcut.": "skip_connection."}  # fmt: skip
    state = unet.state_dict()
    resnets = {k: v for k, v in state.items() if ".resnets." in k}
    others = {k: v for k, v in state.items() if ".resnets." not in k}
    return {**_renamed(resnets, prefixes, resnet), **_renamed(others, prefixes)}


def _vae_to_sgm(vae: Any) -> dict:
    levels, n = len(vae.config.block_out_channels), vae.config.layers_per_block
    prefixes = [("quant_conv.", "quant_conv."), ("post_quant_conv.", "post_quant_conv.")]
    for part in ("encoder", "decoder"):
        prefixes += [(f"{part}.conv_in.", f"{part}.conv_in."), (f"{part}.conv_out.", f"{part}.conv_out."),
                     (f"{part}.conv_norm_out.", f"{part}.norm_out."),
                     (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1."),
                     (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2."),
                     (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.")]  # fmt: skip
    for i in range(levels):
        prefixes += [(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.") for j in range(n)]
        prefixes += [(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{levels - 1 - i}.block.{j}.")
                     for j in range(n + 1)]  # fmt: skip
        prefixes += [(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."),
                     (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")]  # fmt: skip
    parts = {"conv_shortcut.": "nin_shortcut.", "group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.",
             "to_out.0.": "proj_out."}  # fmt: skip
    out = _renamed(vae.state_dict(), prefixes, parts)
    # The original VAE's attention projections are 1x1 convolutions.
    return {k: v[..., None, None] if ".attn_1." in k and k.endswith("weight") and v.dim() == 2 else v
            for k, v in out.items()}  # fmt: skip


def _open_clip_to_sgm(encoder: Any) -> dict:
    import torch

    state = {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
             for k, v in encoder.state_dict().items() if not k.endswith("position_ids")}  # fmt: skip
    out = {
        "token_embedding.weight": state.pop("text_model.embeddings.token_embedding.weight"),
        "positional_embedding": state.pop("text_model.embeddings.position_embedding.weight"),
        "ln_final.weight": state.pop("text_model.final_layer_norm.weight"),
        "ln_final.bias": state.pop("text_model.final_layer_norm.bias"),
        "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    names = {"layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.", "self_attn.out_proj.": "attn.out_proj.",
             "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj."}  # fmt: skip
    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")})
    for i in layers:
        old, new = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{old}self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[f"{new}attn.in_proj_{kind}"] = torch.cat(qkv)
        for key in [k for k in state if k.startswith(old)]:
            rest = key[len(old) :]
            for a, b in names.items():
                if rest.startswith(a):
                    out[new + b + rest[len(a) :]] = state.pop(key)
                    break
    if state:
        raise KeyError(f"no sgm name for {sorted(state)[:3]}")
    return out


def build_random_sdxl(folder: Path, device: str) -> Any:
    """A StandaloneXLBackend with SDXL base's shapes (the configs Embed Studio ships for single files) and random
    weights, built on `device` and kept in fp16 there on a GPU. The token tables have CLIP's 49408 rows; the
    tokenizer is the tiny one (its ids lie within them). For memory and speed checks at real size."""
    from embed_studio.backends.standalone_xl import SDXL_BASE_SCHEDULER, StandaloneXLBackend

    parts = random_sdxl_parts(folder, device)
    return StandaloneXLBackend(*parts, SDXL_BASE_SCHEDULER, device, checkpoint_name="random-sdxl")


def random_sdxl_parts(folder: Path, device: str) -> tuple[Any, ...]:
    """UNet, VAE, both text encoders and both tokenizers of build_random_sdxl, on `device` (meta: shapes only)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from embed_studio.backends.standalone_xl import SDXL_BASE_TEXT, SDXL_BASE_TEXT_2, SDXL_BASE_UNET, SDXL_BASE_VAE

    torch.manual_seed(0)
    write_tokenizer(folder / "tokenizer")
    files = (str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt"))
    tokenizer = CLIPTokenizer(*files, pad_token="<|endoftext|>", model_max_length=77)
    tokenizer_2 = CLIPTokenizer(*files, pad_token="!", model_max_length=77)

    def ids(tok: Any) -> dict[str, int]:
        return dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)

    # Built on the device (initialising 3.5 billion weights on the CPU takes minutes), each part halved at once
    # so the fp32 copies never coexist.
    half = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(SDXL_BASE_UNET).to(half)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SDXL_BASE_TEXT, **ids(tokenizer))).to(half)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**SDXL_BASE_TEXT_2, **ids(tokenizer_2))).to(half)
        vae = AutoencoderKL.from_config(SDXL_BASE_VAE)
    return unet, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2
