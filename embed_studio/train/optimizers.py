"""The optimizers a run can use: AdamW (torch), and Lion/Prodigy/D-Adaptation when their packages are installed."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from typing import TYPE_CHECKING

from embed_studio.errors import UserInputError

if TYPE_CHECKING:  # torch is imported where it is used: the config (and `train --help`) reads only the names
    import torch

OPTIMIZERS = ("adamw", "lion", "prodigy", "dadapt_adam")
# name -> (module, class, pip package). None of them is a requirement: install.py never installs them.
_PACKAGES = {
    "lion": ("lion_pytorch", "Lion", "lion-pytorch"),
    "prodigy": ("prodigyopt", "Prodigy", "prodigyopt"),
    "dadapt_adam": ("dadaptation", "DAdaptAdam", "dadaptation"),
}
# The rate these optimizers expect: Prodigy and D-Adaptation find the step size themselves and want lr 1.
ADAPTIVE = frozenset({"prodigy", "dadapt_adam"})


def optimizer_available(name: str) -> bool:
    if name == "adamw":
        return True
    module = _PACKAGES[name][0]
    return importlib.util.find_spec(module) is not None


def available_optimizers() -> list[str]:
    return [name for name in OPTIMIZERS if optimizer_available(name)]


def require_optimizer(name: str) -> None:
    """Raise UserInputError saying what to install when `name`'s package is missing."""
    if name not in OPTIMIZERS:
        raise UserInputError(f"Optimizer {name!r} is not one of: {', '.join(OPTIMIZERS)}.")
    if not optimizer_available(name):
        module, _, package = _PACKAGES[name]
        raise UserInputError(
            f"The {name} optimizer needs the '{package}' package, which is not installed. Install it into the "
            f"Python that runs Embed Studio (pip install {package}) or pick adamw."
        )


def make_optimizer(
    name: str,
    params: Iterable[torch.Tensor],
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float,
) -> torch.optim.Optimizer:
    """The optimizer over `params` only (the trained vectors or modules; frozen weights are never in it)."""
    require_optimizer(name)
    if name == "adamw":
        import torch

        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
    module, cls_name, _ = _PACKAGES[name]
    cls = getattr(importlib.import_module(module), cls_name)
    if name == "lion":  # Lion has no eps
        return cls(params, lr=lr, betas=betas, weight_decay=weight_decay)
    return cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
