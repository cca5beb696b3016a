"""Networks with a learned width: K members stacked into one module, each giving (mu_k, log s_k).

Stacking the members' weights ([K, in, out] per layer) runs all of them as one batched matmul per layer,
in training and in the exported graph alike, instead of K separate subgraphs.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class StackedMLP(nn.Module):
    """K independent MLPs with a mean and a log-sigma head, evaluated together.

    Input (B, F) is shared by every member; input (K, B, F) gives each member its own batch (as in training,
    where each member sees its own shuffling of the data). Output (K, B, 2): mean and log sigma.
    """

    def __init__(self, members: int, n_inputs: int, hidden: int, layers: int, generator: torch.Generator):
        super().__init__()
        widths = [n_inputs, *[hidden] * layers, 2]
        self.members = members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # the default nn.Linear initialisation, member by member
            w = (torch.rand(members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(members, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.activation = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0) if x.dim() == 2 else x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.matmul(h, w) + b
            if i < last:
                h = self.activation(h)
        return h


def gaussian_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Heteroscedastic Gaussian negative log-likelihood, summed over members and averaged over points.

    output (K, B, 2) = (mu, log sigma); target (K, B) or (B,). The constant log sqrt(2 pi) is dropped.
    """
    mu, log_sigma = output[..., 0], output[..., 1]
    nll = 0.5 * ((target - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma
    return nll.mean(dim=-1).sum()
