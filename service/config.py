"""Server configuration: pydantic-settings from the command line, `CALSURR_*` variables and a YAML file.

Precedence, highest first: command-line options (passed as keyword arguments), environment variables, the
YAML file, defaults. Everything is validated at start, and an error names the field that is wrong.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import DirectoryPath, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from calsurr.service.auth import parse_token_file
from calsurr.service.batcher import (
    DEFAULT_INLINE_MAX_ROWS,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_PREFERRED_BATCH_SIZE,
    MAX_QUEUE_DELAY_US,
    BatchingPolicy,
)
from calsurr.service.repository import RepositoryPolicy
from calsurr.service.runtime import PREFERRED_PROVIDERS, RuntimeOptions
from calsurr.service.tls import TlsFiles, check_tls_files

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # 64 MiB: ~800k gg->ggg events of FP64 momenta per request
DEFAULT_METRICS_PORT = 8002  # Triton's metrics port, so dashboards and scrape configs carry over
MAX_INSTANCES = 64

# The YAML file of the settings being built; a context variable so that concurrent loads cannot mix files.
_yaml_file: ContextVar[Path | None] = ContextVar("calsurr_yaml_file", default=None)


class ConfigFileError(ValueError):
    """The YAML file is missing, unreadable, or not a mapping of setting names to values."""


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALSURR_", extra="forbid")

    repo: DirectoryPath = Field(description="model repository folder: <repo>/<model>/<version>/{model.onnx, card.json}")
    host: str = Field(
        default="127.0.0.1", description="address to bind (gRPC and metrics); 0.0.0.0 for every interface"
    )
    port: int = Field(default=8001, ge=0, le=65535, description="gRPC port; 0 picks a free one")
    providers: tuple[str, ...] = Field(
        default=PREFERRED_PROVIDERS, description="onnxruntime execution providers, in order of preference"
    )
    intra_op_threads: int = Field(default=0, ge=0, description="threads per onnxruntime session; 0: automatic")
    spinning: bool = Field(
        default=False,
        description="onnxruntime threads spin between runs: lower latency on cores left to onnxruntime alone, "
        "slower where the event loop and gRPC share them",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="event loop of the server: uvloop (libuv, less CPU per request) or asyncio"
    )
    instances: int = Field(
        default=1, ge=1, le=MAX_INSTANCES, description="onnxruntime runs of one model that may go on at once"
    )
    batching: bool = Field(default=True, description="merge concurrent requests into one run; off for benchmarks")
    max_batch_size: int = Field(
        default=DEFAULT_MAX_BATCH_SIZE, ge=1, description="most rows in one run; larger requests are refused"
    )
    preferred_batch_size: int = Field(
        default=DEFAULT_PREFERRED_BATCH_SIZE,
        ge=1,
        description="rows the batcher merges into one run at most; larger runs cost memory, not time per row",
    )
    inline_max_rows: int = Field(
        default=DEFAULT_INLINE_MAX_ROWS,
        ge=0,
        description="a lone request of at most this many rows that finds the model idle runs on the event "
        "loop's thread, sparing two thread hops; 0: every run on a runner thread",
    )
    max_queue_delay_us: int = Field(
        default=0,
        ge=0,
        le=MAX_QUEUE_DELAY_US,
        description="microseconds a batch may wait for more requests; 0: run what has queued at once",
    )
    max_queue_size: int = Field(
        default=DEFAULT_MAX_QUEUE_SIZE, ge=1, description="requests queued per model; beyond, RESOURCE_EXHAUSTED"
    )
    metrics: bool = Field(default=True, description="serve Prometheus metrics over HTTP at /metrics")
    metrics_port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535, description="metrics port; 0 a free one")
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024, description="largest gRPC message")
    grace_seconds: float = Field(default=5.0, ge=0, description="time to finish accepted requests on shutdown")
    version_policy: Annotated[RepositoryPolicy, NoDecode] = Field(
        default_factory=RepositoryPolicy,
        description="versions each model serves: 'latest' (newest ready, default), 'latest:N', 'all', "
        "'specific:1,3'; per model: {default: latest, models: {gg_ggg: all}}",
    )
    repository_poll_seconds: float = Field(
        default=0.0,
        ge=0,
        description="seconds between scans of the repository for new, changed, deleted versions; 0: off",
    )
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate chain: serve gRPC over TLS (with tls_key); followed on disk"
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(
        default=None, description="PEM CA: clients must present a certificate it signed (mutual TLS)"
    )
    metrics_tls: bool = Field(
        default=False, description="serve /metrics over HTTPS with the same certificate (and client CA)"
    )
    auth_tokens: Path | None = Field(
        default=None,
        description="token file ('ROLE sha256:HEX' lines, `calsurr token new`): every RPC but health checks "
        "needs 'authorization: Bearer <token>' of its role (infer or admin); re-read when it changes",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="log threshold")
    log_format: Literal["text", "json"] = Field(default="text", description="'json': one JSON object per line")

    @model_validator(mode="after")
    def _security_files_usable(self) -> ServerSettings:
        """TLS files and the token file are checked here, so a mistake stops the start naming the file."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both to serve over TLS, or neither")
        if self.tls_cert is None and (self.tls_client_ca is not None or self.metrics_tls):
            raise ValueError("tls_client_ca and metrics_tls need tls_cert and tls_key")
        if self.tls_files is not None:
            check_tls_files(self.tls_files)
        if self.auth_tokens is not None:
            parse_token_file(self.auth_tokens)
        return self

    @property
    def tls_files(self) -> TlsFiles | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_client_ca)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        yaml_file = _yaml_file.get()
        if yaml_file is not None:
            sources += (YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),)
        return sources

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides) -> ServerSettings:
        """Settings from `overrides` (the command line), then CALSURR_* variables, then `config_file`."""
        if config_file is None:
            return cls(**overrides)
        _check_yaml(Path(config_file))
        with _reading(Path(config_file)):
            return cls(**overrides)

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(providers=self.providers, intra_op_threads=self.intra_op_threads, spinning=self.spinning)

    def batching_policy(self) -> BatchingPolicy:
        return BatchingPolicy(
            enabled=self.batching,
            max_batch_size=self.max_batch_size,
            preferred_batch_size=self.preferred_batch_size,
            max_queue_delay_us=self.max_queue_delay_us,
            max_queue_size=self.max_queue_size,
            instances=self.instances,
            inline_max_rows=self.inline_max_rows,
        )


def describe_errors(exc: ValidationError) -> str:
    """One line per bad setting, named as in the YAML file: 'port: Input should be ... (got 70000)'."""
    lines = []
    for error in exc.errors():
        if not error["loc"]:  # a check across settings: its message names them
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        field = ".".join(str(part) for part in error["loc"])
        got = f" (got {error['input']!r})" if error["type"] != "missing" else ""
        lines.append(f"{field}: {error['msg']}{got}")
    return "; ".join(lines)


@contextmanager
def _reading(path: Path):
    token = _yaml_file.set(path)
    try:
        yield
    finally:
        _yaml_file.reset(token)


def _check_yaml(path: Path) -> None:
    """Fail early and plainly on a file pydantic-settings would skip silently or choke on."""
    if not path.is_file():
        raise ConfigFileError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"config file {path} is not readable YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigFileError(
            f"config file {path} must map setting names to values (e.g. 'port: 8001'), got a {type(data).__name__}"
        )
