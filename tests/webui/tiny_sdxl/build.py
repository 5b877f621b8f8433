#!/usr/bin/env python
"""Build tiny-sdxl.safetensors + tiny-sdxl.yaml: a random-weight SDXL base checkpoint in the WebUI's (sgm) layout.

Run with the WebUI's interpreter after ./install-open-clip-config.sh:
    SD_WEBUI_DIR=/path/to/webui $SD_WEBUI_PYTHON tests/webui/tiny_sdxl/build.py
It writes SD_WEBUI_DIR/models/Stable-diffusion/tiny-sdxl.{safetensors,yaml} and the CLIP-L config + tokenizer
folder the yaml names (SD_WEBUI_DIR/embed-studio-fixtures/tiny-sdxl-clip-l, tokenizer files copied from the
tiny SD1 checkpoint's CLIP folder). The WebUI detects it as SDXL (a DiffusionEngine with a conditioner).
Both text encoders keep SDXL's widths (768, 1280) with 2 layers, so the file is ~300 MB (fp16); UNet and VAE
are tiny. Norms and zero-initialised weights are randomised as in tiny_sd2/build.py.
"""

import argparse
import os
import shutil
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
WEBUI = os.environ["SD_WEBUI_DIR"]
sys.path.insert(0, os.path.join(WEBUI, "repositories", "generative-models"))
TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")


def _sd1_clip_dir() -> str:
    with open(os.path.join(WEBUI, "models", "Stable-diffusion", "tiny-sd1.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["model"]["params"]["cond_stage_config"]["params"]["version"]


def main():
    models = os.path.join(WEBUI, "models", "Stable-diffusion")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(models, "tiny-sdxl.safetensors"))
    ap.add_argument("--clip-dir", default=os.path.join(WEBUI, "embed-studio-fixtures", "tiny-sdxl-clip-l"))
    ap.add_argument("--tokenizer-from", default=None, help="a CLIP tokenizer folder (default: tiny-sd1.yaml's)")
    ap.add_argument("--seed", type=int, default=4321)
    args = ap.parse_args()

    os.makedirs(args.clip_dir, exist_ok=True)
    source = args.tokenizer_from or _sd1_clip_dir()
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(source, name), os.path.join(args.clip_dir, name))
    shutil.copy(os.path.join(HERE, "clip-l-config.json"), os.path.join(args.clip_dir, "config.json"))
    with open(os.path.join(HERE, "tiny-sdxl.yaml"), encoding="utf-8") as f:
        text = f.read().replace("CLIP_L_DIR", os.path.abspath(args.clip_dir))
    yaml_out = os.path.splitext(args.out)[0] + ".yaml"

    import torch
    import transformers
    from omegaconf import OmegaConf
    from safetensors.torch import save_file
    from sgm.util import instantiate_from_config

    # The folder holds a config and a tokenizer, no weights (the WebUI builds CLIP-L from its config too).
    def from_config(name, *a, **k):
        return transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(name))

    transformers.CLIPTextModel.from_pretrained = from_config
    torch.manual_seed(args.seed)
    model = instantiate_from_config(OmegaConf.create(yaml.safe_load(text)).model).eval()

    gen = torch.Generator().manual_seed(args.seed)
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, norm_types) and getattr(mod, "weight", None) is not None:
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
        for p in model.parameters():
            if p.dim() >= 2 and p.abs().max() == 0:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))

    sd = {k: v.detach().to(torch.float16).contiguous().clone() for k, v in model.state_dict().items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("conditioner.embedders.1.model.visual")}
    assert "conditioner.embedders.1.model.ln_final.weight" in sd  # what the WebUI's SDXL detection looks for
    assert sd["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"].shape[1] == 768
    assert sd["conditioner.embedders.1.model.token_embedding.weight"].shape[1] == 1280
    save_file(sd, args.out, metadata={"format": "pt", "note": "tiny random SDXL test fixture"})
    with open(yaml_out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"saved {len(sd)} tensors to {args.out} ({os.path.getsize(args.out)} bytes) and {yaml_out}")


if __name__ == "__main__":
    main()
