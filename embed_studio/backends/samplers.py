"""Preview samplers by name: the diffusers scheduler (and its settings) each name stands for, without importing torch."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
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

# The WebUI's schedule types (v1.9+) that the table above can draw: Automatic is each scheduler's own spacing,
# Karras picks a sampler's _karras row. The WebUI backend draws every schedule type its host has.
AUTOMATIC = "Automatic"
STANDALONE_SCHEDULERS = (AUTOMATIC, "Karras")

# The host's own check where the host draws previews with its own samplers (the WebUI registers one when it
# loads the extension); None = the table above. Called as check(sampler, scheduler, what).
_host_check: Callable[[str, str, str], object] | None = None


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


def standalone_sampler(name: str, scheduler: str = AUTOMATIC, what: str = "Preview sampler") -> str:
    """The SAMPLERS key for a sampler with a WebUI schedule type (Karras: its _karras row); UserInputError in one
    line for a schedule type this table has no row for."""
    key = require_sampler(name, what)
    wanted = (scheduler or AUTOMATIC).strip()
    if wanted.lower() == AUTOMATIC.lower():
        return key
    if wanted.lower() != "karras":
        raise UserInputError(
            f"Schedule type {wanted!r}: the standalone previews draw with {' or '.join(STANDALONE_SCHEDULERS)} "
            "(the other schedule types are the WebUI's)."
        )
    karras = key if key.endswith("_karras") else f"{key}_karras"
    if karras not in SAMPLERS:
        rows = ", ".join(k.removesuffix("_karras") for k in SAMPLERS if k.endswith("_karras"))
        raise UserInputError(f"Schedule type 'Karras' has no {key} here; with Karras pick one of: {rows}.")
    return require_sampler(karras, what)


def set_host_check(check: Callable[[str, str, str], object] | None) -> None:
    """Let the host check preview sampler names (the WebUI's own samplers and schedule types); None = the table."""
    global _host_check
    _host_check = check


def check_preview_sampler(name: str, scheduler: str = AUTOMATIC, what: str = "Preview sampler") -> None:
    """UserInputError in one line unless the host (or, without one, the table) draws `name` with `scheduler`."""
    if _host_check is not None:
        _host_check(name, scheduler, what)
    else:
        standalone_sampler(name, scheduler, what)
