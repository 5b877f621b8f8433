#!/usr/bin/env python
"""Build tiny-sd2-v.safetensors: a random-weight SD 2.x v-prediction checkpoint (LDM layout).

Run with the WebUI's interpreter after ./install-open-clip-config.sh, then copy the .safetensors
and the .yaml into SD_WEBUI_DIR/models/Stable-diffusion/ (test_webui_training.py's SD 2.x test
looks for a checkpoint named tiny-sd2*):
    SD_WEBUI_DIR=/path/to/webui $SD_WEBUI_PYTHON tests/webui/tiny_sd2/build.py --out /tmp/tiny-sd2-v.safetensors
Mirrors tiny-sd1: norm weights ~ 1 + 0.1*N(0,1), norm biases ~ 0.1*N(0,1); weights that ldm
zero-initialises (zero_module: resblock out convs, transformer proj_out, UNet out conv) ~ 0.02*N(0,1),
so outputs are not degenerate.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WEBUI = os.environ["SD_WEBUI_DIR"]
sys.path.insert(0, os.path.join(WEBUI, "repositories", "stable-diffusion-stability-ai"))

import torch  # noqa: E402
from ldm.util import instantiate_from_config  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(HERE, "tiny-sd2-v.yaml"))
    ap.add_argument("--out", default=os.path.join(HERE, "tiny-sd2-v.safetensors"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    config = OmegaConf.load(args.config)
    model = instantiate_from_config(config.model).eval()
    assert model.parameterization == "v"

    gen = torch.Generator().manual_seed(args.seed)
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm)
    n_norm = n_zero = 0
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, norm_types) and getattr(mod, "weight", None) is not None:
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
                n_norm += 1
        for p in model.parameters():
            if p.dim() >= 2 and p.abs().max() == 0:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
                n_zero += 1

    sd = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    bad = [k for k in sd if k.startswith("cond_stage_model.model.visual")]
    assert not bad, bad
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in sd
    save_file(sd, args.out, metadata={"format": "pt", "note": "tiny random SD2 v-prediction test fixture"})
    print(f"randomised {n_norm} norm layers, {n_zero} zero-initialised weights")
    print(
        f"saved {len(sd)} tensors ({sum(v.numel() for v in sd.values())} values) to {args.out}: {os.path.getsize(args.out)} bytes"
    )


if __name__ == "__main__":
    main()
