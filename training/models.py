"""Networks with a learned width: K members stacked into one module, each giving (mu_k, log s_k).

Stacking the members' weights ([K, in, out] per layer) runs all of them as one batched matmul per layer,
in training and in the exported graph alike, instead of K separate subgraphs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

Activation = Literal["silu", "gelu"]


class TanhGELU(nn.Module):
    """GELU in its tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written out so that the exported
    graph holds Tanh: onnxruntime has no float64 Erf kernel (the exact form would not serve float64 members),
    and its fused Gelu op is off by 6e-9 in float64 (Tanh is exact to 1e-16), which sigma_stat, a small
    difference of member means, would magnify past the export check. The two constants are tensors of the
    input's dtype: torch's exporter rounds Python float scalars through float32 (0.044715 -> 0.04471499845),
    a 3e-8 relative shift of every float64 prediction (buffers would be rounded too, by a float32 round trip
    of the members)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor(math.sqrt(2.0 / math.pi), dtype=x.dtype, device=x.device)
        cubic = torch.tensor(0.044715, dtype=x.dtype, device=x.device)
        return 0.5 * x * (1.0 + torch.tanh(scale * (x + cubic * x * x * x)))


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"silu": nn.SiLU, "gelu": TanhGELU}


class StackedMLP(nn.Module):
    """K independent MLPs with a mean and a log-sigma head, evaluated together.

    Input (B, F) is shared by every member; input (K, B, F) gives each member its own batch (as in training,
    where each member sees its own shuffling of the data). Output (K, B, 2): mean and log sigma.
    """

    def __init__(
        self,
        members: int,
        n_inputs: int,
        hidden: int,
        layers: int,
        generator: torch.Generator,
        activation: Activation = "silu",
    ):
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
        self.activation = ACTIVATIONS[activation]()

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0) if x.dim() == 2 else x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = self.activation(torch.matmul(h, w) + b)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self._hidden(x), self.weights[-1]) + self.biases[-1]

    def head_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the log-sigma head is linear in, the last hidden layer (K, B, hidden), and the output (K, B, 2),
        from one pass: log s_k = h . w_k + c_k with (w_k, c_k) = `width_parameters` (`fit.refit_widths`)."""
        h = self._hidden(x)
        output = torch.matmul(h, self.weights[-1]) + self.biases[-1]
        return (h if h.shape[0] == self.members else h.expand(self.members, -1, -1)), output

    def width_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the log-sigma head, (K, hidden) and (K,): the second output column of the last layer."""
        return self.weights[-1][..., 1].detach().clone(), self.biases[-1][:, 0, 1].detach().clone()

    def set_width_parameters(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        with torch.no_grad():
            self.weights[-1][..., 1].copy_(weight)
            self.biases[-1][:, 0, 1].copy_(bias)


class LorentzTransformerEnsemble(nn.Module):
    """K Lorentz-equivariant transformers (L-GATr-slim from the `lgatr` package: Spinner et al.,
    arXiv:2405.14806, in its vector-and-scalar form), each giving (mu_k, log s_k) like `StackedMLP`.

    Input (B, 4n) or (K, B, 4n): the n four-momenta, flattened and divided by one scale (`MomentumFeatures`),
    so that a Lorentz transformation of the momenta is one of the input vectors. Each particle is a token:
    its momentum one vector channel, a one-hot of its position the scalar channels (the beams are not the
    final state; with `symmetry: canonical` the positions are energy-ordered). Scalars out of the last
    layer, averaged over the tokens, are (mu, log sigma): Lorentz invariant by construction, as |M|^2 is.
    `hidden` scalar channels and hidden // 4 vector channels per token, `layers` transformer blocks.
    """

    def __init__(
        self, members: int, n_particles: int, hidden: int, layers: int, generator: torch.Generator, heads: int = 2
    ):
        from lgatr import LGATrSlim  # training only, and only for this network: ~1 s to import

        super().__init__()
        self.members, self.n_particles = members, n_particles
        # lgatr initialises from torch's global generator: seed it from ours, without disturbing the caller's
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.nets = nn.ModuleList(
                LGATrSlim(
                    num_blocks=layers,
                    in_v_channels=1,
                    out_v_channels=0,
                    hidden_v_channels=max(1, hidden // 4),
                    in_s_channels=n_particles,
                    out_s_channels=2,
                    hidden_s_channels=hidden,
                    num_heads=heads,
                    nonlinearity="silu",  # its "gelu" exports to onnxruntime's Gelu, 6e-9 off in float64 (TanhGELU)
                )
                for _ in range(members)
            )
        for module in self.nets.modules():  # the norms' epsilon, a Python float, as a tensor of the model's dtype:
            if isinstance(getattr(module, "epsilon", None), float):  # the exporter rounds Python floats through
                epsilon = module.epsilon  # float32, which moved float64 members' means by 1e-9 against torch
                del module.epsilon
                module.register_buffer("epsilon", torch.tensor(epsilon), persistent=False)
        self.register_buffer("tags", torch.eye(n_particles), persistent=False)

    def _member(self, net: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        """One member on (B, 4n) rows: (B, 2), the output scalars averaged over the particles."""
        vectors = rows.reshape(rows.shape[0], self.n_particles, 1, 4)
        scalars = self.tags.to(rows.dtype).expand(rows.shape[0], -1, -1)
        _, out = net(vectors, scalars)
        return out.sum(dim=-2) / self.n_particles  # not .mean(): the exporter would name a node 'mean'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._member(net, x if x.dim() == 2 else x[k]) for k, net in enumerate(self.nets)])

    def head_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The token average of the scalars entering each member's last layer, (K, B, hidden), and the output
        (K, B, 2), from one pass: the token-averaged log s = mean_t(h_t . w + c) = mean_t(h_t) . w + c is
        linear in it (`StackedMLP.head_inputs`)."""
        features, outputs = [], []
        for k, net in enumerate(self.nets):
            seen: list[torch.Tensor] = []
            hook = net.linear_out.register_forward_hook(lambda _module, args, _out, seen=seen: seen.append(args[1]))
            try:
                outputs.append(self._member(net, x if x.dim() == 2 else x[k]))
            finally:
                hook.remove()
            features.append(seen[0].mean(dim=-2))
        return torch.stack(features), torch.stack(outputs)

    def width_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of each member's log-sigma row of its last scalar layer, (K, hidden) and (K,)."""
        layers = [net.linear_out.linear_s for net in self.nets]
        return (
            torch.stack([layer.weight[1].detach() for layer in layers]),
            torch.stack([layer.bias[1].detach() for layer in layers]),
        )

    def set_width_parameters(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        with torch.no_grad():
            for k, net in enumerate(self.nets):
                net.linear_out.linear_s.weight[1].copy_(weight[k])
                net.linear_out.linear_s.bias[1].copy_(bias[k])


def gaussian_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Heteroscedastic Gaussian negative log-likelihood, summed over members and averaged over points.

    output (K, B, 2) = (mu, log sigma); target (K, B) or (B,). The constant log sqrt(2 pi) is dropped.
    """
    mu, log_sigma = output[..., 0], output[..., 1]
    nll = 0.5 * ((target - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma
    return nll.mean(dim=-1).sum()


INITIAL_POSTERIOR_SIGMA = 1e-3  # start close to a deterministic network; the likelihood and KL widen it


class VariationalMLP(nn.Module):
    """A Bayesian network: mean-field Gaussian weights q(w) = N(mu, softplus(rho)^2) with a N(0, prior^2) prior.

    The training loss is the negative ELBO: Gaussian NLL + KL(q || prior) / N_train, its expectation over q
    estimated with the local reparameterisation trick (Kingma, Salimans, Welling, arXiv:1506.02557): each
    layer's pre-activations, Gaussian under q for a given input, are drawn per example instead of one weight
    draw shared by the batch. Same expectation, far less gradient noise, at up to twice the cost per step:
    gg -> ggg reaches 0.045 % in 250 epochs instead of 0.074 % in 400, with pulls centred. At export the
    posterior is frozen into K seeded weight draws, `sample_members`, which serve as an ensemble: their
    spread is sigma_stat, their widths sigma_syst.
    """

    members = 1

    def __init__(
        self,
        n_inputs: int,
        hidden: int,
        layers: int,
        generator: torch.Generator,
        prior_sigma: float = 1.0,
        activation: Activation = "silu",
    ):
        super().__init__()
        init = StackedMLP(1, n_inputs, hidden, layers, generator)
        self.means = nn.ParameterList([nn.Parameter(w[0].clone()) for w in init.weights])
        self.bias_means = nn.ParameterList([nn.Parameter(b[0].clone()) for b in init.biases])
        start = math.log(math.expm1(INITIAL_POSTERIOR_SIGMA))
        self.rhos = nn.ParameterList([nn.Parameter(torch.full_like(w, start)) for w in self.means])
        self.bias_rhos = nn.ParameterList([nn.Parameter(torch.full_like(b, start)) for b in self.bias_means])
        self.prior_sigma = prior_sigma
        self.activation_name: Activation = activation
        self.activation = ACTIVATIONS[activation]()
        self.hidden, self.layers = hidden, layers

    def _draw(self, generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        def sample(mean: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
            return mean + nn.functional.softplus(rho) * noise

        weights = [sample(m, r) for m, r in zip(self.means, self.rhos)]
        biases = [sample(m, r) for m, r in zip(self.bias_means, self.bias_rhos)]
        return weights, biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, F) or (1, B, F) through weights drawn from q independently for every example; (1, B, 2).

        For an input h, a layer's output h W + b under q is Gaussian with mean h mu_W + mu_b and variance
        h^2 sigma_W^2 + sigma_b^2 per unit, which is drawn directly.
        """
        h = x.unsqueeze(0) if x.dim() == 2 else x
        last = len(self.means) - 1
        for i, (mean, rho, bias_mean, bias_rho) in enumerate(
            zip(self.means, self.rhos, self.bias_means, self.bias_rhos)
        ):
            centre = torch.matmul(h, mean) + bias_mean
            variance = torch.matmul(h * h, nn.functional.softplus(rho) ** 2) + nn.functional.softplus(bias_rho) ** 2
            h = centre + torch.sqrt(variance) * torch.randn_like(centre)
            if i < last:
                h = self.activation(h)
        return h

    def kl_divergence(self) -> torch.Tensor:
        """KL(q || prior) summed over every weight, in closed form for Gaussians."""
        total = torch.zeros((), device=self.means[0].device)
        prior_var = self.prior_sigma**2
        for mean, rho in [*zip(self.means, self.rhos), *zip(self.bias_means, self.bias_rhos)]:
            var = nn.functional.softplus(rho) ** 2
            total = total + 0.5 * ((var + mean**2) / prior_var - 1.0 - torch.log(var / prior_var)).sum()
        return total

    def sample_members(self, members: int, seed: int) -> StackedMLP:
        """K fixed draws from the posterior as a stacked ensemble (what gets exported)."""
        generator = torch.Generator().manual_seed(seed)
        stacked = StackedMLP(members, self.means[0].shape[0], self.hidden, self.layers, generator, self.activation_name)
        draws = [self._draw(generator) for _ in range(members)]
        with torch.no_grad():
            for layer in range(len(self.means)):
                stacked.weights[layer].copy_(torch.stack([w[layer] for w, _ in draws]))
                stacked.biases[layer].copy_(torch.stack([b[layer] for _, b in draws]))
        return stacked.to(self.means[0].dtype)


def function_space_repulsion(member_means: torch.Tensor) -> torch.Tensor:
    """Repulsion of a repulsive ensemble (D'Angelo and Fortuin, arXiv:2106.11642), in function space.

    member_means (K, B): each member's prediction on the same batch. Returns sum_i log sum_j k(f_i, sg(f_j))
    with an RBF kernel whose bandwidth follows the median heuristic; its gradient pushes member i away from
    the others (the Wasserstein-gradient-flow update with a kernel density estimate of the function-space
    posterior). Scaled by 1 / N_train by the caller, so it competes with the likelihood of the whole set.
    """
    members = member_means.shape[0]
    others = member_means.detach()
    distances = ((member_means.unsqueeze(1) - others.unsqueeze(0)) ** 2).sum(-1)  # (K, K)
    off_diagonal = distances.detach()[~torch.eye(members, dtype=torch.bool, device=distances.device)]
    bandwidth = off_diagonal.median() / math.log(members) + 1e-12
    return torch.logsumexp(-distances / bandwidth, dim=1).sum()
