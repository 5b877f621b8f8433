"""Hypernetwork modules with the WebUI's semantics, so state dicts ("linear.N.weight") load in either place."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from embed_studio.errors import UserInputError
from embed_studio.formats.hypernetwork import HypernetworkData, activation_classes, build_module_stack, module_layout

WEIGHT_INITS = ("Normal", "XavierUniform", "XavierNormal", "KaimingUniform", "KaimingNormal")


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
        activations = activation_classes()
        if activation_func not in (None, "linear") and activation_func not in activations:
            raise UserInputError(
                f"Activation {activation_func!r} is unknown; use one of {', '.join(sorted(activations))}."
            )
        if weight_init not in WEIGHT_INITS:
            raise UserInputError(
                f"Weight initialization {weight_init!r} is unknown; use one of {', '.join(WEIGHT_INITS)}."
            )
        if dropout_structure is not None:
            if len(dropout_structure) != len(structure):
                raise UserInputError(
                    f"Dropout structure {list(dropout_structure)} needs one value per layer ({len(structure)})."
                )
            if any(not 0 <= p < 1 for p in dropout_structure):
                raise UserInputError(
                    f"Dropout structure {list(dropout_structure)}: each value must be from 0 to below 1."
                )
        layout = module_layout(structure, activation_func, add_layer_norm, dropout_structure, activate_output)
        self.linear = build_module_stack(dim, layout)
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


def build_modules(data: HypernetworkData) -> dict[int, tuple[HypernetworkModule, HypernetworkModule]]:
    """Modules for a HypernetworkData (whose loader already renamed the oldest files' keys), loaded from its state dicts."""
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
                data.effective_dropout_structure(),
            )
            module.load_state_dict(sd)
            pair.append(module)
        modules[int(size)] = (pair[0], pair[1])
    return modules


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
