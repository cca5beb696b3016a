"""The precision levers: canonical ordering of identical gluons, the Parke-Taylor target prefactor, the
activation and the learning-rate schedules; each checked against an independent fact, and through ONNX."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from pydantic import ValidationError

from calsurr.training.data import generate_amplitudes
from calsurr.training.export import export_to_repository, input_name
from calsurr.training.fit import FitConfig, learning_rate_schedule
from calsurr.training.models import StackedMLP
from calsurr.training.pipeline import TrainingConfig, build_surrogate, predict, train_surrogate
from calsurr.training.runs import load_run, save_run
from calsurr.training.surrogate import InvariantFeatures, ParkeTaylorPrefactor, Surrogate, canonical_order


@pytest.fixture(scope="module")
def five_gluon_events():
    return generate_amplitudes("gg_ggg", 400, seed=3)


def _shuffled(momenta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each event's final-state gluons in a random order and, for half of them, the beams exchanged."""
    out = momenta.copy()
    n = momenta.shape[1]
    for row in out:
        row[2:] = row[2 + rng.permutation(n - 2)]
        if rng.random() < 0.5:
            row[[0, 1]] = row[[1, 0]]
    return out


@pytest.mark.parametrize("process", ["gg_gg", "gg_ggg"])
def test_parke_taylor_sum_is_the_exact_squared_amplitude_up_to_four_and_five_gluons(process):
    # A textbook identity (Mangano and Parke): for n <= 5 every helicity amplitude is MHV and subleading colour
    # vanishes; our |M|^2 comes from the DDM colour basis and Berends-Giele, independent of the prefactor code.
    events = generate_amplitudes(process, 300, seed=1)
    log_p = ParkeTaylorPrefactor(events.n_particles)(torch.from_numpy(events.momenta)).numpy()
    ratio = np.log(events.target) - log_p
    assert np.std(ratio) < 1e-9
    assert np.ptp(np.log(events.target)) > 3  # the target itself varies over orders of magnitude


def test_parke_taylor_prefactor_holds_the_six_gluon_poles():
    events = generate_amplitudes("gg_gggg", 300, seed=2)
    prefactor = ParkeTaylorPrefactor(6)
    assert prefactor.orderings == math.factorial(5) // 2
    log_ratio = np.log(events.target) - prefactor(torch.from_numpy(events.momenta)).numpy()
    # NMHV and subleading colour make the ratio vary, but far less than |M|^2 itself, which carries the poles
    assert 0.01 < np.std(log_ratio) < 0.2 * np.std(np.log(events.target))


def test_canonical_order_picks_one_point_per_orbit(five_gluon_events):
    momenta = torch.from_numpy(five_gluon_events.momenta)
    shuffled = torch.from_numpy(_shuffled(five_gluon_events.momenta, np.random.default_rng(0)))
    canonical = canonical_order(momenta)
    assert torch.equal(canonical_order(shuffled), canonical)
    assert torch.equal(canonical_order(canonical), canonical)
    # a permutation of each event's momenta: the same four-vectors, sorted by energy in the final state
    assert torch.allclose(canonical.sum(1), momenta.sum(1), rtol=0, atol=1e-9)
    energies = canonical[:, 2:, 0]  # the partonic rest frame: P.p_i is sqrt(s) E_i
    assert bool((energies[:, :-1] >= energies[:, 1:]).all())


def test_canonical_features_make_the_surrogate_symmetric_and_plain_ones_do_not(five_gluon_events):
    generator = torch.Generator().manual_seed(0)
    network = StackedMLP(2, 10, 16, 2, generator)
    momenta = five_gluon_events.momenta
    shuffled = _shuffled(momenta, np.random.default_rng(1))
    answers = {}
    for symmetry in ("none", "canonical"):
        model = Surrogate(InvariantFeatures(5, symmetry), network, "log").double()
        model.fit_standardisation(torch.from_numpy(momenta), torch.from_numpy(five_gluon_events.target))
        answers[symmetry] = [predict(model, m)[0] for m in (momenta, shuffled)]
    np.testing.assert_allclose(*answers["canonical"], rtol=1e-12)
    assert np.max(np.abs(answers["none"][0] / answers["none"][1] - 1)) > 1e-3


def test_levers_refused_where_they_do_not_apply():
    with pytest.raises(ValidationError, match="Parke-Taylor sum is the exact"):
        TrainingConfig(process="gg_ggg", target_prefactor="parke_taylor")
    with pytest.raises(ValidationError, match="not to the calorimeter"):
        TrainingConfig(process="calorimeter", symmetry="canonical")
    with pytest.raises(ValidationError):
        TrainingConfig(activation="relu")
    with pytest.raises(ValidationError):
        FitConfig(schedule="step")


def test_every_lever_exports_to_onnx_matching_torch_and_saves(tmp_path):
    config = TrainingConfig(
        process="gg_gggg",
        n_events=600,
        members=2,
        hidden=16,
        layers=2,
        activation="gelu",
        symmetry="canonical",
        target_prefactor="parke_taylor",
        fit=FitConfig(epochs=3, batch_size=128, schedule="one_cycle", beta1=0.99),
    )
    run = train_surrogate(config, show_progress=False)
    version_dir = export_to_repository(run, tmp_path, "gg_gggg", version=1, member_dtype="float64")
    export_to_repository(run, tmp_path, "gg_gggg", version=2)  # float32 members: checked within their bounds
    session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = run.test.inputs
    served = session.run(None, {input_name(run.model): inputs})
    for name, onnx_value, torch_value in zip(run.model.output_names, served, predict(run.model, inputs)):
        # float64 throughout (a constant rounded through float32 would show at 1e-8); sigma_stat, a difference
        # of near-equal member means, magnifies the rounding of the means
        rtol = 1e-9 if name in ("sigma_stat", "sigma_tot") else 1e-12
        np.testing.assert_allclose(onnx_value, torch_value, rtol=rtol, err_msg=name)
    # the graph serves the symmetry too: permuted gluons give the same answer
    shuffled = _shuffled(inputs, np.random.default_rng(2))
    np.testing.assert_allclose(session.run(None, {input_name(run.model): shuffled})[0], served[0], rtol=1e-12)
    # and the prefactor is in it: the mean is the network's ratio times P, following the poles
    assert np.std(np.log(served[0])) > 1.0
    # a saved run with every lever rebuilds from its config alone
    save_run(run, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    np.testing.assert_array_equal(predict(loaded.model, inputs)[0], predict(run.model, inputs)[0])


def _rates(schedule: str, total: int = 100, warmup: float = 0.1) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimiser = torch.optim.AdamW([parameter], lr=1e-2, betas=(0.9, 0.999))
    scheduler = learning_rate_schedule(
        optimiser, FitConfig(schedule=schedule, warmup=warmup, learning_rate=1e-2), total
    )
    rates = []
    for _ in range(total):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("schedule", ["cosine", "warmup_cosine", "one_cycle"])
def test_learning_rate_schedules_have_their_shape(schedule):
    rates = _rates(schedule)
    peak = int(np.argmax(rates))
    assert max(rates) == pytest.approx(1e-2, rel=1e-6)
    assert rates[-1] < 1e-2 * 0.01  # annealed to (nearly) nothing
    if schedule == "cosine":
        assert peak == 0
    else:  # rises over the warm-up share, then falls monotonically
        assert 8 <= peak <= 10 and rates[0] < 0.2 * rates[peak]
        assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :]))


def test_build_surrogate_takes_the_configured_activation():
    config = TrainingConfig(activation="gelu", members=2)
    model = build_surrogate(config, np.zeros((4, 4, 4)))
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    expected = torch.nn.GELU(approximate="tanh")(x)
    assert torch.allclose(model.ensemble.activation(x), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("autocast", ["none", "bfloat16"])
def test_autocast_runs_the_forward_pass_in_bfloat16_and_keeps_float32_weights(autocast):
    from calsurr.training.fit import fit_network

    generator = torch.Generator().manual_seed(0)
    network = StackedMLP(2, 3, 8, 2, generator)
    seen: list[tuple[bool, torch.dtype]] = []

    def record(module, args):  # is autocast on, and in which dtype does a matmul of the inputs come out
        seen.append((torch.is_autocast_enabled("cpu"), torch.matmul(args[0], module.weights[0]).dtype))

    network.register_forward_pre_hook(record)
    x = torch.randn(64, 3, generator=generator)
    y = x.sum(1)
    config = FitConfig(epochs=2, batch_size=32, autocast=autocast, device="cpu")
    fit_network(network, "deep_ensemble", x, y, x, y, config, show_progress=False)
    on = autocast == "bfloat16"
    assert seen[:2] == [(on, torch.bfloat16 if on else torch.float32)] * 2  # the first epoch's two steps
    assert seen[2] == (False, torch.float32)  # validation runs outside autocast
    assert all(p.dtype == torch.float32 for p in network.parameters())


def test_width_refit_moves_the_widths_alone_and_brings_them_to_the_held_out_error():
    from calsurr.training.fit import _validation_loss, fit_network, refit_widths

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3072, 3, generator=generator)
    y = torch.sin(x).sum(1) + 0.05 * torch.randn(3072, generator=generator)  # label noise of 0.05
    x_train, y_train, x_held, y_held = x[:2048], y[:2048], x[2048:], y[2048:]
    network = StackedMLP(2, 3, 32, 2, generator)
    fit = FitConfig(epochs=30, batch_size=128)
    fit_network(network, "deep_ensemble", x_train, y_train, x_held, y_held, fit, show_progress=False)
    with torch.no_grad():
        network.biases[-1][..., 1] += 2.0  # every width e^2 times too large
        before = network(x_held)
    start, _ = network.width_parameters()
    losses = refit_widths(network, x_held, y_held, FitConfig(device="cpu"))
    with torch.no_grad():
        after = network(x_held)
    assert torch.equal(after[..., 0], before[..., 0])  # the means did not move
    assert len(losses) > 2 and losses[-1] < _validation_loss_of(before, y_held) - 1.0
    assert losses[-1] == pytest.approx(_validation_loss(network, x_held, y_held), rel=1e-5)  # float32 weights
    # at the optimum the objective is stationary in every head parameter: in the bias, each member's squared
    # pulls average exactly 1 on the points refit; in each weight, their excess times its feature balances the
    # unit prior about the fit's head, (w - w_0) / N
    n = len(y_held)
    with torch.no_grad():
        h = network.head_inputs(x_held)[0].double()
        excess = 1.0 - ((y_held - after[..., 0]) * torch.exp(-after[..., 1])).double() ** 2  # (K, N)
        weight, _ = network.width_parameters()
    np.testing.assert_allclose(excess.mean(dim=1).numpy(), 0.0, atol=1e-4)
    balance = torch.einsum("kn,knf->kf", excess, h) / n + (weight - start).double() / n
    np.testing.assert_allclose(balance.numpy(), 0.0, atol=1e-4)
    assert float((weight - start).abs().max()) > 1e-2  # the weights did move
    assert float((after[..., 1] - before[..., 1]).median()) < -1.5  # the e^2-too-wide widths came back down
    assert all(p.requires_grad for p in network.parameters())


def _validation_loss_of(output: torch.Tensor, y: torch.Tensor) -> float:
    from calsurr.training.models import gaussian_nll

    return gaussian_nll(output, y).item() / output.shape[0]
