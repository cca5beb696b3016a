"""Where training runs: `device` auto/cpu/cuda. The CPU path runs for real; the CUDA path is checked by mocking
the availability (and redirecting the moves to the CPU), not the math."""

from __future__ import annotations

import pytest
import torch

from calsurr.training import fit
from calsurr.training.fit import DeviceUnavailable, FitConfig, fit_network, resolve_device
from calsurr.training.models import StackedMLP


@pytest.mark.parametrize(
    ("available", "device", "expected"),
    [(False, "auto", "cpu"), (True, "auto", "cuda"), (True, "cpu", "cpu"), (True, "cuda", "cuda")],
)
def test_auto_picks_cuda_when_torch_sees_a_gpu(monkeypatch, available, device, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device(device) == torch.device(expected)


def test_cuda_without_a_gpu_is_refused_not_run_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailable, match="torch sees no CUDA GPU"):
        resolve_device("cuda")


def _problem(n: int = 256):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    y = x.sum(1)
    return StackedMLP(2, 3, 8, 2, generator), x, y


def test_the_cpu_path_trains(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    network, x, y = _problem()
    history = fit_network(network, "deep_ensemble", x, y, x[:64], y[:64], FitConfig(epochs=3, device="auto"), False)
    assert len(history.val_loss) == 3 and history.val_loss[-1] < history.val_loss[0]
    assert next(network.parameters()).device.type == "cpu"


def test_with_a_gpu_seen_the_network_and_the_data_go_to_cuda(monkeypatch):
    """torch sees a GPU (mocked): every move fit_network makes asks for CUDA; the moves are redirected to the
    CPU so that the training itself runs, and the network comes back on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked: list[str] = []

    def to_cpu_instead_of_cuda(original):
        def to(self, *args, **kwargs):
            if args and isinstance(args[0], (str, torch.device)) and torch.device(args[0]).type == "cuda":
                asked.append("cuda")
                args = ("cpu", *args[1:])
            return original(self, *args, **kwargs)

        return to

    monkeypatch.setattr(torch.Tensor, "to", to_cpu_instead_of_cuda(torch.Tensor.to))
    monkeypatch.setattr(torch.nn.Module, "to", to_cpu_instead_of_cuda(torch.nn.Module.to))
    network, x, y = _problem()
    fit_network(network, "deep_ensemble", x, y, x[:64], y[:64], FitConfig(epochs=2, device="auto"), False)
    assert asked.count("cuda") >= 1 + 4 + 2  # the network, the four data tensors, the shuffle of each epoch
    assert fit.resolve_device("auto").type == "cuda"
