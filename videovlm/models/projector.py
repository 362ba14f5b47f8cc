"""Projector from visual tokens into the language side's embedding space (LLaVA-style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass
class ProjectorConfig:
    """Fields:
    kind: ``linear`` (Video-LLaMA, LLaVA-1) or ``mlp`` (Linear-GELU-Linear, LLaVA-1.5).
    hidden_dim: width of the MLP's hidden layer; None = the output dim.
    """

    kind: Literal["linear", "mlp"] = "linear"
    hidden_dim: int | None = None


class Projector(nn.Module):
    """tokens (..., D_in) -> (..., D_out)."""

    def __init__(self, config: ProjectorConfig, *, input_dim: int, output_dim: int):
        super().__init__()
        if config.kind == "linear":
            self.layers = nn.Sequential(nn.Linear(input_dim, output_dim))
        else:
            hidden = config.hidden_dim or output_dim
            self.layers = nn.Sequential(nn.Linear(input_dim, hidden), nn.GELU(), nn.Linear(hidden, output_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layers(tokens)
