"""Hypernetwork modules with the WebUI's semantics, so state dicts ("linear.N.weight") load in either place."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from embed_studio.errors import UserInputError

WEIGHT_INITS = ("Normal", "XavierUniform", "XavierNormal", "KaimingUniform", "KaimingNormal")

_NAMED_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "leakyrelu": nn.LeakyReLU,
    "elu": nn.ELU,
    "swish": nn.Hardswish,  # the WebUI maps "swish" to Hardswish; keep it so files behave the same there
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def activation_choices() -> dict[str, type[nn.Module]]:
    """Every activation name the WebUI accepts: its named ones plus torch.nn's activation classes, lower-cased."""
    found = {
        name.lower(): cls
        for name, cls in inspect.getmembers(torch.nn.modules.activation, inspect.isclass)
        if cls.__module__ == "torch.nn.modules.activation"
    }
    return {**found, **_NAMED_ACTIVATIONS}


def parse_layer_structure(text: str | Sequence[float]) -> list[float]:
    """'1, 2, 1' -> [1.0, 2.0, 1.0]; must start and end with 1 like the WebUI requires."""
    if isinstance(text, str):
        try:
            values = [float(x) for x in text.replace(" ", "").split(",") if x]
        except ValueError:
            raise UserInputError(
                f"Layer structure {text!r} must be comma-separated numbers such as '1, 2, 1'."
            ) from None
    else:
        values = [float(x) for x in text]
    if len(values) < 2 or values[0] != 1 or values[-1] != 1:
        raise UserInputError(f"Layer structure {values} must start and end with 1, e.g. '1, 2, 1' or '1, 1.5, 1.5, 1'.")
    if any(v <= 0 for v in values):
        raise UserInputError(f"Layer structure {values}: every size multiplier must be positive.")
    return values


class HypernetworkModule(nn.Module):
    """x + MLP(x) on an attention context; layers under `linear` so keys read "linear.N.weight"."""

    def __init__(
        self,
        dim: int,
        layer_structure: Sequence[float],
        activation_func: str | None = "linear",
        weight_init: str = "Normal",
        add_layer_norm: bool = False,
        activate_output: bool = False,
        dropout_structure: Sequence[float] | None = None,
    ):
        super().__init__()
        self.multiplier = 1.0
        structure = parse_layer_structure(layer_structure)
        activations = activation_choices()
        if activation_func not in (None, "linear") and activation_func not in activations:
            raise UserInputError(
                f"Activation {activation_func!r} is unknown; use one of {', '.join(sorted(activations))}."
            )
        if weight_init not in WEIGHT_INITS:
            raise UserInputError(
                f"Weight initialization {weight_init!r} is unknown; use one of {', '.join(WEIGHT_INITS)}."
            )
        if dropout_structure is not None and len(dropout_structure) != len(structure):
            raise UserInputError(
                f"Dropout structure {list(dropout_structure)} needs one value per layer ({len(structure)})."
            )
        layers: list[nn.Module] = []
        last = len(structure) - 2
        for i in range(len(structure) - 1):
            layers.append(nn.Linear(int(dim * structure[i]), int(dim * structure[i + 1])))
            if activation_func not in (None, "linear") and (i < last or activate_output):
                layers.append(activations[activation_func]())
            if add_layer_norm:
                layers.append(nn.LayerNorm(int(dim * structure[i + 1])))
            if dropout_structure is not None and dropout_structure[i + 1] > 0:
                p = float(dropout_structure[i + 1])
                if not 0 < p < 1:
                    raise UserInputError(f"Dropout probability {p} must be between 0 and 1.")
                layers.append(nn.Dropout(p=p))
        self.linear = nn.Sequential(*layers)
        self._initialise(weight_init, activation_func)

    def _initialise(self, weight_init: str, activation_func: str | None) -> None:
        nonlinearity = "leaky_relu" if activation_func == "leakyrelu" else "relu"
        for layer in self.linear:
            if not isinstance(layer, (nn.Linear, nn.LayerNorm)):
                continue
            w, b = layer.weight.data, layer.bias.data
            if weight_init == "Normal" or isinstance(layer, nn.LayerNorm):
                # As the WebUI does (LayerNorm included): tiny weights, zero bias, so a new network is ~identity.
                nn.init.normal_(w, mean=0.0, std=0.01)
                nn.init.zeros_(b)
            elif weight_init == "XavierUniform":
                nn.init.xavier_uniform_(w)
                nn.init.zeros_(b)
            elif weight_init == "XavierNormal":
                nn.init.xavier_normal_(w)
                nn.init.zeros_(b)
            elif weight_init == "KaimingUniform":
                nn.init.kaiming_uniform_(w, nonlinearity=nonlinearity)
                nn.init.zeros_(b)
            else:
                nn.init.kaiming_normal_(w, nonlinearity=nonlinearity)
                nn.init.zeros_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(x) * (1.0 if self.training else self.multiplier)


def build_modules(data: object) -> dict[int, tuple[HypernetworkModule, HypernetworkModule]]:
    """Modules for a formats.hypernetwork.HypernetworkData, loaded from its state dicts."""
    modules: dict[int, tuple[HypernetworkModule, HypernetworkModule]] = {}
    for size, state_dicts in data.layers.items():
        pair = []
        for sd in state_dicts:
            module = HypernetworkModule(
                int(size),
                data.layer_structure,
                data.activation_func,
                data.weight_initialization,
                data.is_layer_norm,
                data.activate_output,
                data.dropout_structure,
            )
            module.load_state_dict(_fix_old_keys(dict(sd)))
            pair.append(module)
        modules[int(size)] = (pair[0], pair[1])
    return modules


def _fix_old_keys(sd: dict) -> dict:
    # Early WebUI hypernetworks named their two layers linear1/linear2.
    renames = {
        "linear1.weight": "linear.0.weight",
        "linear1.bias": "linear.0.bias",
        "linear2.weight": "linear.1.weight",
        "linear2.bias": "linear.1.bias",
    }
    return {renames.get(k, k): v for k, v in sd.items()}


def modules_state(
    modules: dict[int, tuple[HypernetworkModule, HypernetworkModule]],
) -> dict[int, list[dict[str, torch.Tensor]]]:
    """State dicts in the HypernetworkData.layers layout, float32 on the CPU."""
    return {
        size: [{k: v.detach().float().cpu().clone() for k, v in m.state_dict().items()} for m in pair]
        for size, pair in modules.items()
    }


def trainable_parameters(modules: dict[int, tuple[HypernetworkModule, HypernetworkModule]]) -> list[nn.Parameter]:
    return [p for pair in modules.values() for m in pair for p in m.parameters()]
