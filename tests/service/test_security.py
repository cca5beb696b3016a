"""TLS, mutual TLS and bearer tokens with roles, with our Python client and the unmodified tritonclient;
certificates made by `trustme`."""

from __future__ import annotations

import datetime
import logging
import shutil
import ssl
import time
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import trustme
from pydantic import ValidationError

from calsurr.service.auth import ADMIN_METHODS, OPEN_METHODS, new_token, parse_token_file, required_role
from calsurr.service.client import Credentials, InferenceClient, RetryPolicy
from calsurr.service.config import ServerSettings, describe_errors
from calsurr.service.server import CARD_DESCRIPTOR, INFERENCE_DESCRIPTOR, BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.serving import infer_request, sample

pytestmark = pytest.mark.slow
HOSTS = ("127.0.0.1", "localhost")
NO_RETRY = RetryPolicy(max_attempts=1)
ALL_METHODS = [f"/{s.full_name}/{m.name}" for s in (INFERENCE_DESCRIPTOR, CARD_DESCRIPTOR) for m in s.methods]


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca, tmp_path_factory):
    """Server certificate and key, the CA, a client certificate of that CA, and one of another CA."""
    folder = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert(*HOSTS)
    server.private_key_pem.write_to_path(folder / "server.key")
    server.cert_chain_pems[0].write_to_path(folder / "server.pem")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    client = ca.issue_cert("generator-job@site")
    client.private_key_pem.write_to_path(folder / "client.key")
    client.cert_chain_pems[0].write_to_path(folder / "client.pem")
    stranger = trustme.CA().issue_cert("intruder")
    stranger.private_key_pem.write_to_path(folder / "stranger.key")
    stranger.cert_chain_pems[0].write_to_path(folder / "stranger.pem")
    return folder


@pytest.fixture(scope="module")
def momenta(tiny_run):
    return np.ascontiguousarray(tiny_run.test.momenta[:4])


def _serve(repo, **settings):
    return BackgroundServer(ServerSettings(repo=repo, port=0, metrics_port=0, **settings))


def _predict(address: str, momenta, credentials: Credentials | None = None):
    with InferenceClient(address, timeout=10, retry=NO_RETRY, credentials=credentials) as client:
        return client.predict(TINY_MODEL, momenta)


# -- TLS ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tiny_repository, pki):
    with _serve(tiny_repository, tls_cert=pki / "server.pem", tls_key=pki / "server.key", metrics_tls=True) as s:
        yield s


def test_tls_serves_a_client_that_trusts_the_ca_and_refuses_plaintext(tls_server, pki, momenta):
    trusting = Credentials.from_files(ca=pki / "ca.pem")
    assert _predict(tls_server.address, momenta, trusting).model_version == "1"
    with pytest.raises(grpc.RpcError) as plaintext:
        _predict(tls_server.address, momenta)
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_refuses_a_client_that_trusts_another_ca(tls_server, momenta):
    other = Credentials(root_certificates=trustme.CA().cert_pem.bytes())
    with pytest.raises(grpc.RpcError) as error:
        _predict(tls_server.address, momenta, other)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tritonclient_over_tls(tls_server, pki, momenta):
    client = triton.InferenceServerClient(tls_server.address, ssl=True, root_certificates=str(pki / "ca.pem"))
    tensor = triton.InferInput("momenta", list(momenta.shape), "FP64")
    tensor.set_data_from_numpy(momenta)
    assert client.infer(TINY_MODEL, [tensor]).as_numpy("sigma_tot").shape == (len(momenta),)
    client.close()


def test_metrics_over_https_with_the_same_certificate(tls_server, pki):
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    url = f"https://127.0.0.1:{tls_server.running.metrics_port}/metrics"
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        assert b"calsurr_requests_total" in response.read()
    with pytest.raises(OSError):  # plain HTTP to the TLS port: the handshake fails, the connection is reset
        urllib.request.urlopen(url.replace("https", "http"), timeout=10).read()


def test_an_expired_server_certificate_is_refused_by_the_client(tiny_repository, ca, tmp_path, momenta):
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    old = ca.issue_cert(*HOSTS, not_before=past - datetime.timedelta(days=365), not_after=past)
    old.private_key_pem.write_to_path(tmp_path / "old.key")
    old.cert_chain_pems[0].write_to_path(tmp_path / "old.pem")
    old_pair = {"tls_cert": tmp_path / "old.pem", "tls_key": tmp_path / "old.key"}
    with _serve(tiny_repository, **old_pair) as server, pytest.raises(grpc.RpcError) as error:
        _predict(server.address, momenta, Credentials(root_certificates=ca.cert_pem.bytes()))
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_rotated_certificates_reach_new_connections_without_a_restart(tiny_repository, ca, tmp_path, momenta):
    first = ca.issue_cert(*HOSTS)
    first.private_key_pem.write_to_path(tmp_path / "tls.key")
    first.cert_chain_pems[0].write_to_path(tmp_path / "tls.pem")
    renewed_ca = trustme.CA()
    with _serve(tiny_repository, tls_cert=tmp_path / "tls.pem", tls_key=tmp_path / "tls.key") as server:
        assert _predict(server.address, momenta, Credentials(root_certificates=ca.cert_pem.bytes()))
        renewed = renewed_ca.issue_cert(*HOSTS)
        renewed.cert_chain_pems[0].write_to_path(tmp_path / "tls.pem")  # cert first: a moment of mismatch
        renewed.private_key_pem.write_to_path(tmp_path / "tls.key")
        assert _predict(server.address, momenta, Credentials(root_certificates=renewed_ca.cert_pem.bytes()))
        with pytest.raises(grpc.RpcError):
            _predict(server.address, momenta, Credentials(root_certificates=ca.cert_pem.bytes()))


# -- mutual TLS ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls_server(tiny_repository, pki):
    tls = {"tls_cert": pki / "server.pem", "tls_key": pki / "server.key", "tls_client_ca": pki / "ca.pem"}
    with _serve(tiny_repository, **tls) as server:
        yield server


def test_mtls_serves_a_client_with_a_certificate_of_the_ca(mtls_server, pki, momenta):
    credentials = Credentials.from_files(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
    assert _predict(mtls_server.address, momenta, credentials).model_version == "1"
    client = triton.InferenceServerClient(
        mtls_server.address,
        ssl=True,
        root_certificates=str(pki / "ca.pem"),
        private_key=str(pki / "client.key"),
        certificate_chain=str(pki / "client.pem"),
    )
    assert client.is_model_ready(TINY_MODEL)
    client.close()


@pytest.mark.parametrize("client_cert", [None, "stranger"])
def test_mtls_refuses_a_client_without_a_certificate_of_the_ca(mtls_server, pki, momenta, client_cert):
    files = {"cert": pki / f"{client_cert}.pem", "key": pki / f"{client_cert}.key"} if client_cert else {}
    with pytest.raises(grpc.RpcError) as error:
        _predict(mtls_server.address, momenta, Credentials.from_files(ca=pki / "ca.pem", **files))
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


# -- settings checked at start ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        ({"tls_cert": "server.pem"}, "tls_cert and tls_key go together"),
        ({"tls_cert": "server.pem", "tls_key": "missing.key"}, "missing.key is not readable"),
        ({"tls_cert": "server.pem", "tls_key": "client.key"}, "client.key does not match certificate"),
        ({"tls_client_ca": "ca.pem"}, "need tls_cert and tls_key"),
        ({"tls_cert": "server.pem", "tls_key": "server.key", "tls_client_ca": "server.key"}, "is not a PEM cert"),
    ],
)
def test_bad_tls_files_stop_the_start_naming_the_file(tiny_repository, pki, files, complaint):
    with pytest.raises(ValidationError) as error:
        ServerSettings(repo=tiny_repository, **{k: pki / v for k, v in files.items()})
    assert complaint in describe_errors(error.value)


# -- tokens and roles ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "tokens"
    infer, admin = new_token("infer", path), new_token("admin", path)
    return path, infer, admin


@pytest.fixture(scope="module")
def auth_server(tiny_repository, tokens, tmp_path_factory):
    path, _, _ = tokens
    repo = tmp_path_factory.mktemp("auth-repo") / "repository"
    shutil.copytree(tiny_repository, repo)
    with _serve(repo, auth_tokens=path) as server:
        yield server


def _raw(address: str, method: str, token: str | None):
    """Call any method with an empty message (valid bytes for every request type) and the token."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(address) as channel:
        kind = next(m for s in (INFERENCE_DESCRIPTOR, CARD_DESCRIPTOR) for m in s.methods if method.endswith(m.name))
        if kind.client_streaming:
            call = channel.stream_stream(method)
            return list(call(iter([b""]), timeout=10, metadata=metadata))
        return channel.unary_unary(method)(b"", timeout=10, metadata=metadata)


def _code(address: str, method: str, token: str | None) -> grpc.StatusCode:
    try:
        _raw(address, method, token)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_the_token_file_written_by_token_new_parses_with_both_roles(tokens):
    path, infer, admin = tokens
    assert [g.role for g in parse_token_file(path)] == ["infer", "admin"]
    assert infer not in path.read_text() and admin not in path.read_text()  # hashes only
    assert path.stat().st_mode & 0o077 == 0


def test_every_rpc_but_the_open_ones_needs_a_token(auth_server):
    for method in ALL_METHODS:
        code = _code(auth_server.address, method, None)
        if method in OPEN_METHODS:
            assert code == grpc.StatusCode.OK, method
        else:
            assert code == grpc.StatusCode.UNAUTHENTICATED, method
        assert _code(auth_server.address, method, "not-a-token") in (
            (grpc.StatusCode.OK,) if method in OPEN_METHODS else (grpc.StatusCode.UNAUTHENTICATED,)
        ), method


def test_roles_grant_what_they_say(auth_server, tokens):
    _, infer, admin = tokens
    for method in ALL_METHODS:
        role = required_role(method)
        infer_code, admin_code = _code(auth_server.address, method, infer), _code(auth_server.address, method, admin)
        assert admin_code != grpc.StatusCode.PERMISSION_DENIED and admin_code != grpc.StatusCode.UNAUTHENTICATED
        if role == "admin":
            assert infer_code == grpc.StatusCode.PERMISSION_DENIED, method
        else:
            assert infer_code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), method
    assert {m for m in ALL_METHODS if required_role(m) == "admin"} == ADMIN_METHODS


def test_wrong_role_names_the_role_needed_and_health_stays_open(auth_server, tokens):
    _, infer, _ = tokens
    with pytest.raises(grpc.RpcError) as error:
        _raw(auth_server.address, "/inference.GRPCInferenceService/RepositoryIndex", infer)
    assert "needs a token of role 'admin'" in error.value.details()
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(auth_server.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_clients_with_a_token_infer_and_stream(auth_server, tokens, momenta):
    _, infer, _ = tokens
    assert _predict(auth_server.address, momenta, Credentials(token=infer)).model_version == "1"
    with InferenceClient(auth_server.address, timeout=10, credentials=Credentials(token=infer)) as client:
        assert [len(p) for p in client.stream_predict(TINY_MODEL, [momenta, momenta[:2]])] == [4, 2]
        assert client.card(TINY_MODEL).name == TINY_MODEL
    client = triton.InferenceServerClient(auth_server.address)
    tensor = triton.InferInput("momenta", list(momenta.shape), "FP64")
    tensor.set_data_from_numpy(momenta)
    result = client.infer(TINY_MODEL, [tensor], headers={"authorization": f"Bearer {infer}"})
    assert result.as_numpy("mean").shape == (4,)
    with pytest.raises(triton.InferenceServerException, match="UNAUTHENTICATED"):
        client.infer(TINY_MODEL, [tensor])
    client.close()


def test_refusals_are_counted_and_logged_with_the_peer_never_the_token(auth_server, tokens, caplog):
    _, infer, _ = tokens
    before = {r: sample(auth_server, "calsurr_auth_failures_total", reason=r) for r in ("missing_token", "wrong_role")}
    with caplog.at_level(logging.INFO, logger="calsurr.service.auth"):
        _code(auth_server.address, "/inference.GRPCInferenceService/ModelInfer", None)
        _code(auth_server.address, "/inference.GRPCInferenceService/RepositoryModelUnload", infer)
    assert sample(auth_server, "calsurr_auth_failures_total", reason="missing_token") == before["missing_token"] + 1
    assert sample(auth_server, "calsurr_auth_failures_total", reason="wrong_role") == before["wrong_role"] + 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(lines) == 2 and all("127.0.0.1" in line or "ipv" in line for line in lines), lines
    assert not any(infer in r.getMessage() for r in caplog.records)


def test_a_revoked_token_is_refused_without_a_restart(tiny_repository, tmp_path, momenta):
    path = tmp_path / "tokens"
    keep, revoke = new_token("infer", path), new_token("infer", path)
    with _serve(tiny_repository, auth_tokens=path) as server:
        assert _predict(server.address, momenta, Credentials(token=revoke))
        path.write_text(path.read_text().splitlines()[0] + "\n")  # the second line deleted
        give_up = time.monotonic() + 10
        while (
            _code(server.address, "/inference.GRPCInferenceService/ModelReady", revoke)
            != grpc.StatusCode.UNAUTHENTICATED
        ):
            assert time.monotonic() < give_up, "the revoked token still works"
            time.sleep(0.1)
        assert _predict(server.address, momenta, Credentials(token=keep))
        request = infer_request(momenta)
        with grpc.insecure_channel(server.address) as channel:
            stub = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.RpcError) as error:
                stub(request.SerializeToString(), metadata=(("authorization", f"Bearer {revoke}"),), timeout=10)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("root sha256:" + "0" * 64, "line 1: expected 'ROLE sha256:HEX'"),
        ("infer sha256:abc", "line 1: the hash is not 64 hexadecimal digits"),
        ("# a comment\n\ninfer " + "0" * 64, "line 3: expected"),
    ],
)
def test_a_bad_token_file_stops_the_start_naming_the_line(tiny_repository, tmp_path, text, complaint):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ValidationError) as error:
        ServerSettings(repo=tiny_repository, auth_tokens=path)
    assert complaint in describe_errors(error.value)
