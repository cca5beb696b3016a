import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.training.data import generate_amplitudes
from calsurr.training.export import EXPORT_RTOL, FLOAT32_MEMBER_RTOL, export_to_repository, relative_differences
from calsurr.training.pipeline import predict
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("member_dtype", ["float64", "float32"])
def test_onnx_reproduces_torch_on_fresh_points_and_any_batch_size(tiny_run, tiny_repository, tmp_path, member_dtype):
    if member_dtype == "float64":  # as the shared repository was exported
        folder, bounds = tiny_repository / TINY_MODEL / "1", dict.fromkeys(FLOAT32_MEMBER_RTOL, EXPORT_RTOL)
        assert ModelCard.read(folder / CARD_FILENAME).uncertainty.member_dtype == "float64"
    else:
        folder = export_to_repository(tiny_run, tmp_path, TINY_MODEL, version=1, member_dtype="float32")
        bounds = FLOAT32_MEMBER_RTOL
    session = ort.InferenceSession(str(folder / MODEL_FILENAME))
    fresh = generate_amplitudes("gg_gg", 1000, seed=99).momenta  # points neither seen in training nor export
    names = ["mean", "sigma_stat", "sigma_syst", "sigma_tot"]
    for batch in (fresh[:1], fresh[:7], fresh):
        onnx_out = session.run(names, {"momenta": batch})
        for name, got, expected in zip(names, onnx_out, predict(tiny_run.model, batch), strict=True):
            np.testing.assert_allclose(got, expected, rtol=bounds[name], err_msg=name)


def test_card_describes_the_model(tiny_run, tiny_repository):
    card = ModelCard.read(tiny_repository / TINY_MODEL / "1" / CARD_FILENAME)
    assert (card.name, card.version, card.task, card.process) == (TINY_MODEL, 1, "amplitude", "gg_gg")
    assert card.uncertainty.members == 3 and card.uncertainty.method == "deep_ensemble"
    assert card.inputs[0].shape == (-1, 4, 4) and card.inputs[0].unit == "GeV"
    assert card.domain.sqrt_s_gev == 1000.0 and card.domain.min_sij_over_s == 0.01
    assert card.calibration == tiny_run.calibration
    assert card.provenance.dataset_sha256 == tiny_run.dataset_sha256
    np.testing.assert_array_equal(card.example_inputs["momenta"], tiny_run.test.momenta[:4])
    mean, _, _, sigma_tot = predict(tiny_run.model, tiny_run.test.momenta)
    relative = sigma_tot / mean
    assert np.quantile(relative, 0.99) < card.out_of_domain_relative_sigma < 10 * relative.max()


def test_versions_are_immutable_and_staging_leaves_nothing(tiny_run, tiny_repository):
    with pytest.raises(FileExistsError):
        export_to_repository(tiny_run, tiny_repository, TINY_MODEL, version=1)
    assert sorted(p.name for p in (tiny_repository / TINY_MODEL).iterdir()) == ["1"]
    json.loads((tiny_repository / TINY_MODEL / "1" / CARD_FILENAME).read_text())


def test_member_outputs_aggregate_to_the_mean(tiny_run, tmp_path):
    folder = export_to_repository(tiny_run, tmp_path, TINY_MODEL, version=1, with_members=True)
    card = ModelCard.read(folder / CARD_FILENAME)
    assert [o.name for o in card.outputs][-2:] == ["member_mean", "member_sigma"]
    assert card.outputs[-1].shape == (-1, 3)
    session = ort.InferenceSession(str(folder / MODEL_FILENAME))
    mean, members, widths = session.run(["mean", "member_mean", "member_sigma"], {"momenta": tiny_run.test.momenta})
    assert members.shape == widths.shape == (len(mean), 3)
    np.testing.assert_allclose(mean, np.exp(np.log(members).mean(axis=1)), rtol=1e-12)  # log-space average
    # the card's c, g and W_0 give sigma_syst from the members' widths, and its alpha and rho sigma_stat from
    # their spread and widths, as the graph computes them
    u = card.uncertainty
    assert u.aggregation == "ambiguity" and u.shared_share > 0 and u.share_reference_width > 0
    assert 0 < u.spread_weight < 1 and u.spread_prior_share > 0
    sigma_stat, sigma_syst = session.run(["sigma_stat", "sigma_syst"], {"momenta": tiny_run.test.momenta})
    width = ((widths / members) ** 2).mean(axis=1)  # <s_k^2> in log space
    share = np.minimum(u.shared_share * (width / u.share_reference_width) ** u.share_power, 1.0)
    np.testing.assert_allclose(sigma_syst, mean * np.sqrt(share * width), rtol=1e-5)
    spread = np.log(members).var(axis=1, ddof=1)
    scatter = u.spread_weight * spread + (1 - u.spread_weight) * u.spread_prior_share * width
    np.testing.assert_allclose(sigma_stat, mean * np.sqrt(scatter / members.shape[1]), rtol=1e-5)
    assert tiny_run.model.output_names == ("mean", "sigma_stat", "sigma_syst", "sigma_tot")  # option reset


def test_float32_members_agree_with_the_float64_model_within_the_stated_bounds(tiny_run, tiny_repository, tmp_path):
    import onnx

    members_before = {k: v.clone() for k, v in tiny_run.model.ensemble.state_dict().items()}
    folder = export_to_repository(tiny_run, tmp_path, TINY_MODEL, version=1, member_dtype="float32")
    after = tiny_run.model.ensemble.state_dict()
    assert all(torch.equal(v, after[k]) and after[k].dtype == torch.float64 for k, v in members_before.items())
    exact_folder = tiny_repository / TINY_MODEL / "1"  # exported with float64 members
    card = ModelCard.read(folder / CARD_FILENAME)
    assert card.uncertainty.member_dtype == "float32" and card.inputs[0].datatype == "FP64"
    weights = [i for i in onnx.load(str(folder / MODEL_FILENAME)).graph.initializer if len(i.dims) == 3]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT for i in weights)  # the stacked members' matrices
    fresh = generate_amplitudes("gg_gg", 2000, seed=98).momenta
    names = ["mean", "sigma_stat", "sigma_syst", "sigma_tot"]
    fast = ort.InferenceSession(str(folder / MODEL_FILENAME)).run(names, {"momenta": fresh})
    exact = ort.InferenceSession(str(exact_folder / MODEL_FILENAME)).run(names, {"momenta": fresh})
    for name, got, expected in zip(names, fast, exact, strict=True):
        relative = np.max(np.abs(got - expected) / np.abs(expected))
        assert relative <= FLOAT32_MEMBER_RTOL[name], (name, relative)
        assert got.dtype == np.float64
    assert np.max(np.abs(fast[0] - exact[0]) / exact[0]) > 0  # really computed in another precision
    assert next(tiny_run.model.ensemble.parameters()).dtype.is_floating_point  # the run is left as it was
    assert str(next(tiny_run.model.ensemble.parameters()).dtype) == "torch.float64"


def test_float32_parts_of_the_error_bar_are_measured_against_sigma_tot(tiny_run, tmp_path):
    """sigma_stat and sigma_syst of a float32-member graph are held to their bounds over torch's sigma_tot."""
    folder = export_to_repository(tiny_run, tmp_path, TINY_MODEL, version=1, member_dtype="float32")
    inputs = tiny_run.test.momenta
    reference = predict(tiny_run.model, inputs)
    own = relative_differences(tiny_run.model, folder / MODEL_FILENAME, inputs, reference)
    parts = relative_differences(tiny_run.model, folder / MODEL_FILENAME, inputs, reference, parts_against_total=True)
    got = dict(
        zip(
            ["mean", "sigma_stat", "sigma_syst", "sigma_tot"],
            ort.InferenceSession(str(folder / MODEL_FILENAME)).run(None, {"momenta": inputs}),
        )
    )
    expected = dict(zip(["mean", "sigma_stat", "sigma_syst", "sigma_tot"], reference))
    for name in ("sigma_stat", "sigma_syst"):
        assert parts[name] == pytest.approx(np.max(np.abs(got[name] - expected[name]) / expected["sigma_tot"]))
        assert parts[name] <= own[name] and parts[name] <= FLOAT32_MEMBER_RTOL[name]
    assert parts["mean"] == own["mean"] and parts["sigma_tot"] == own["sigma_tot"]  # the others as before
