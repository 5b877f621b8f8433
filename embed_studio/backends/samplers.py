"""Preview samplers by name: the diffusers scheduler (and its settings) each name stands for, without importing torch."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from embed_studio.errors import UserInputError


@dataclass(frozen=True)
class Sampler:
    label: str  # the WebUI's name for it, where it has one
    scheduler: str  # the diffusers class
    config: dict[str, Any] = field(default_factory=dict)  # changes to the model's scheduler config
    package: str = ""  # a Python package the scheduler needs beyond diffusers


# Every scheduler diffusers offers for SD 1.x/2.x/SDXL pipelines (their scheduler's `compatibles`), under the
# WebUI's spelling of its sampler (sampler_key), plus the Karras-sigma and SDE variants the WebUI lists.
# tests/train/test_samplers.py fails when diffusers adds a compatible scheduler this table lacks.
SAMPLERS: dict[str, Sampler] = {
    "euler_a": Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
    "euler": Sampler("Euler", "EulerDiscreteScheduler"),
    "euler_karras": Sampler("Euler Karras", "EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "ddim": Sampler("DDIM", "DDIMScheduler"),
    "ddpm": Sampler("DDPM", "DDPMScheduler"),
    "dpmpp_2m": Sampler("DPM++ 2M", "DPMSolverMultistepScheduler"),
    "dpmpp_2m_karras": Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpmpp_2m_sde": Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpmpp_2m_sde_karras": Sampler(
        "DPM++ 2M SDE Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpmpp_2s": Sampler("DPM++ 2S", "DPMSolverSinglestepScheduler"),
    "dpmpp_sde": Sampler("DPM++ SDE", "DPMSolverSDEScheduler", package="torchsde"),
    "dpmpp_sde_karras": Sampler(
        "DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True}, package="torchsde"
    ),
    "dpm2": Sampler("DPM2", "KDPM2DiscreteScheduler"),
    "dpm2_a": Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    "heun": Sampler("Heun", "HeunDiscreteScheduler"),
    "lms": Sampler("LMS", "LMSDiscreteScheduler", package="scipy"),
    "lms_karras": Sampler("LMS Karras", "LMSDiscreteScheduler", {"use_karras_sigmas": True}, package="scipy"),
    "plms": Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),  # the WebUI's PLMS: PNDM without PRK
    "unipc": Sampler("UniPC", "UniPCMultistepScheduler"),
    "deis": Sampler("DEIS", "DEISMultistepScheduler"),
}
# In diffusers' compatibles list but not for these models: EDM Euler preconditions for EDM-trained models
# (Playground v2.5); on an SD checkpoint it draws noise.
NOT_FOR_SD = frozenset({"EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"})

SAMPLER_HELP = "dpmpp = DPM++, _a = ancestral, _karras = Karras sigmas, _sde = stochastic"


def sampler_key(name: str) -> str:
    """A sampler name as the backends look it up ('Euler a' -> 'euler_a', 'DPM++ 2M Karras' -> 'dpmpp_2m_karras')."""
    return name.strip().lower().replace(" ", "_").replace("+", "p")


def sampler_installed(name: str) -> bool:
    """Whether the package the sampler needs (if any) is installed; the name must be a key of SAMPLERS."""
    package = SAMPLERS[name].package
    return not package or importlib.util.find_spec(package) is not None


def require_sampler(name: str, what: str = "Preview sampler") -> str:
    """`name`'s key in SAMPLERS; UserInputError in one line listing the valid names, or what to install."""
    key = sampler_key(name)
    if key not in SAMPLERS:
        raise UserInputError(f"{what} {name!r} is not one of: {', '.join(SAMPLERS)}.")
    if not sampler_installed(key):
        package = SAMPLERS[key].package
        raise UserInputError(
            f"{what} {key} needs the '{package}' package, which is not installed (pip install {package}); "
            "or pick another sampler."
        )
    return key
