"""Builds a tiny random-weight SDXL-architecture diffusers folder (real diffusers/transformers classes) for tests."""

from __future__ import annotations

from pathlib import Path

from tiny_sd import randomise_norms, write_tokenizer

# The real SDXL widths where the file format and the conditioning depend on them; everything else is tiny.
CLIP_L_WIDTH = 768
CLIP_G_WIDTH = 1280


def build_tiny_sdxl(folder: Path, seed: int = 0, vae_scaling: float = 0.13025) -> Path:
    """Save a StableDiffusionXLPipeline with tiny random weights as a diffusers folder; returns the folder.

    Both text encoders keep SDXL's widths (768 and 1280) so an embedding made here has the shapes the WebUI expects
    ([n, 768] clip_l, [n, 1280] clip_g); they have 2 layers each. The UNet takes the added time ids and the pooled
    1280-wide text embedding like SDXL's ("text_time" addition), with a 2048-wide cross-attention context.
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

    def text_config(width: int, tok: CLIPTokenizer, **extra: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=width,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **extra,
        )

    text_encoder = CLIPTextModel(text_config(CLIP_L_WIDTH, tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(text_config(CLIP_G_WIDTH, tokenizer_2, projection_dim=CLIP_G_WIDTH))
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CLIP_L_WIDTH + CLIP_G_WIDTH,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + CLIP_G_WIDTH,
        transformer_layers_per_block=(1, 2),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8,
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
