"""Server settings: defaults, the YAML file, CALSURR_* variables and options in that order of precedence,
errors naming the bad field, `calsurr serve --help`, and the JSON log format."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from calsurr.cli import app
from calsurr.service.config import ConfigFileError, ServerSettings, describe_errors
from calsurr.service.logs import REQUEST_ID, JsonFormatter, RequestIdFilter
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import TINY_MODEL
from tests.service.serving import WAIT_SECONDS, infer_request

CALSURR = Path(sys.executable).with_name("calsurr")
# Options whose name is not the field's name with dashes.
OPTION_OF_FIELD = {"intra_op_threads": "--threads", "providers": "--provider"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No CALSURR_* variable of the shell running the tests may leak into a test."""
    for name in [n for n in os.environ if n.startswith("CALSURR_")]:
        monkeypatch.delenv(name)


def _yaml(tmp_path: Path, settings: dict) -> Path:
    path = tmp_path / "calsurr.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_defaults(tmp_path):
    settings = ServerSettings.load(repo=tmp_path)
    assert (settings.port, settings.metrics_port, settings.metrics) == (8001, 8002, True)
    assert settings.batching and settings.max_queue_delay_us == 0 and settings.instances == 1
    assert (settings.log_level, settings.log_format) == ("info", "text")
    assert settings.event_loop == "uvloop" and not settings.spinning and settings.preferred_batch_size == 4096


def test_a_yaml_file_sets_what_it_names_and_defaults_fill_the_rest(tmp_path):
    config = _yaml(
        tmp_path,
        {
            "repo": str(tmp_path),
            "max_batch_size": 4096,
            "max_queue_delay_us": 250,
            "providers": ["CPUExecutionProvider"],
            "instances": 2,
            "log_format": "json",
            "preferred_batch_size": 512,
            "inline_max_rows": 0,
            "spinning": True,
            "event_loop": "asyncio",
        },
    )
    settings = ServerSettings.load(config)
    assert settings.max_batch_size == 4096 and settings.max_queue_delay_us == 250 and settings.instances == 2
    assert settings.providers == ("CPUExecutionProvider",) and settings.log_format == "json"
    assert settings.port == 8001
    policy = settings.batching_policy()
    assert (policy.max_batch_size, policy.max_queue_delay_us, policy.instances) == (4096, 250, 2)
    assert policy.preferred_batch_size == 512 and policy.inline_max_rows == 0
    assert settings.runtime_options().spinning and settings.event_loop == "asyncio"


def test_options_beat_environment_beats_yaml_beats_defaults(tmp_path, monkeypatch):
    config = _yaml(tmp_path, {"repo": str(tmp_path), "port": 1111, "metrics_port": 1112, "max_queue_size": 7})
    monkeypatch.setenv("CALSURR_PORT", "2222")
    monkeypatch.setenv("CALSURR_METRICS_PORT", "2223")
    settings = ServerSettings.load(config, metrics_port=3333)
    assert settings.metrics_port == 3333  # option over environment
    assert settings.port == 2222  # environment over file
    assert settings.max_queue_size == 7  # file over default
    assert settings.grace_seconds == 5.0  # default


@pytest.mark.parametrize(
    ("settings", "field", "complaint"),
    [
        ({"max_batch_size": 0}, "max_batch_size", "greater than or equal to 1"),
        ({"port": 70000}, "port", "less than or equal to 65535"),
        ({"log_format": "xml"}, "log_format", "'text' or 'json'"),
        ({"max_queue_delay_us": 5_000_000}, "max_queue_delay_us", "less than or equal to 1000000"),
        ({"batch_size": 8}, "batch_size", "Extra inputs are not permitted"),
        ({"event_loop": "trio"}, "event_loop", "'uvloop' or 'asyncio'"),
        ({"preferred_batch_size": 0}, "preferred_batch_size", "greater than or equal to 1"),
    ],
)
def test_a_bad_yaml_value_is_refused_naming_the_field(tmp_path, settings, field, complaint):
    config = _yaml(tmp_path, {"repo": str(tmp_path), **settings})
    with pytest.raises(ValidationError) as error:
        ServerSettings.load(config)
    message = describe_errors(error.value)
    assert message.startswith(f"{field}: ") and complaint in message


def test_a_bad_environment_value_is_refused_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("CALSURR_INSTANCES", "many")
    with pytest.raises(ValidationError) as error:
        ServerSettings.load(repo=tmp_path)
    assert describe_errors(error.value).startswith("instances: ")


def test_a_missing_repository_is_named(tmp_path):
    with pytest.raises(ValidationError) as error:
        ServerSettings.load()
    assert describe_errors(error.value) == "repo: Field required"
    with pytest.raises(ValidationError, match="repo"):
        ServerSettings.load(repo=tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("content", "complaint"),
    [(None, "does not exist"), ("- port: 1\n", "must map setting names"), ("port: [1\n", "not readable YAML")],
)
def test_a_config_file_that_is_missing_or_not_a_mapping_is_refused(tmp_path, content, complaint):
    path = tmp_path / "calsurr.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigFileError, match=complaint):
        ServerSettings.load(path, repo=tmp_path)


def test_log_settings_accept_any_case(tmp_path, monkeypatch):
    monkeypatch.setenv("CALSURR_LOG_LEVEL", "WARNING")
    assert ServerSettings.load(repo=tmp_path, log_format="JSON").log_level == "warning"


def test_serve_help_documents_every_setting():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "400"}, terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "--config" in result.output
    for field in ServerSettings.model_fields:
        option = OPTION_OF_FIELD.get(field, "--" + field.replace("_", "-"))
        assert option in result.output, f"`calsurr serve --help` lacks {option} (setting {field})"
        assert f"CALSURR_{field.upper()}" in result.output, f"`calsurr serve --help` lacks CALSURR_{field.upper()}"


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--max-queue-size", "0"], "max_queue_size"),
        (["--log-format", "xml"], "log_format"),
        (["--config", "/nonexistent/calsurr.yaml"], "does not exist"),
    ],
)
def test_serve_refuses_a_bad_setting_before_starting(tmp_path, arguments, complaint):
    result = CliRunner().invoke(
        app, ["serve", "--repo", str(tmp_path), *arguments], env={"COLUMNS": "400"}, terminal_width=400
    )
    assert result.exit_code == 2
    assert complaint in result.output


def test_a_json_log_line_carries_the_request_id_and_the_extra_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("calsurr.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    token = REQUEST_ID.set("req-17")
    try:
        logger.warning("infer refused: %s", "queue full", extra={"model": "gg_gg", "rows": 3})
    finally:
        REQUEST_ID.reset(token)
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["request_id"] == "req-17" and entry["message"] == "infer refused: queue full"
    assert (entry["level"], entry["model"], entry["rows"]) == ("warning", "gg_gg", 3)


@pytest.mark.slow
def test_serve_from_a_config_file_with_json_logs_and_request_ids(tiny_repository, tiny_run, tmp_path):
    """`calsurr serve --config FILE` as a process: settings from file and environment, JSON log lines with
    the request ids of gRPC metadata and of the request's `id`, metrics over HTTP, exit 0 on SIGTERM."""
    config = _yaml(
        tmp_path,
        {
            "repo": str(tiny_repository),
            "port": 0,
            "metrics_port": 0,
            "max_batch_size": 4,
            "log_format": "json",
            "log_level": "debug",
        },
    )
    log_path = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSURR_")}
    env.update(PYTHONUNBUFFERED="1", CALSURR_MAX_BATCH_SIZE="8")  # the environment beats the file's 4
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [str(CALSURR), "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=env,
        )
        try:
            line = process.stdout.readline()
            match = re.search(r"on 127\.0\.0\.1:(\d+); metrics on (http://\S+/metrics)", line)
            assert match, f"unexpected first line {line!r}: {log_path.read_text()}"
            momenta = np.ascontiguousarray(tiny_run.test.momenta[:9])
            with grpc.insecure_channel(f"127.0.0.1:{match.group(1)}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                stub.ModelInfer(infer_request(momenta[:6]), metadata=[("x-request-id", "trace-42")], timeout=30)
                with pytest.raises(grpc.RpcError) as error:
                    stub.ModelInfer(infer_request(momenta, id="client-id-7"), timeout=30)
            assert "max_batch_size 8" in error.value.details()
            with urllib.request.urlopen(match.group(2), timeout=30) as response:
                assert 'calsurr_requests_total{code="OK",model="gg_gg",version="1"} 1.0' in response.read().decode()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=WAIT_SECONDS) == 0
        finally:
            if process.poll() is None:
                process.kill()
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]  # all JSON
    by_id = {e.get("request_id"): e for e in entries if e.get("request_id")}
    assert by_id["trace-42"]["code"] == "OK" and by_id["trace-42"]["model"] == TINY_MODEL
    assert by_id["client-id-7"]["code"] == "INVALID_ARGUMENT" and by_id["client-id-7"]["rows"] == 9
    assert any(e["message"] == "stopped" for e in entries)
