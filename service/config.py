"""Server configuration: pydantic-settings, from `CALSURR_`-prefixed environment variables and the CLI."""

from __future__ import annotations

from pydantic import DirectoryPath, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.runtime import PREFERRED_PROVIDERS, RuntimeOptions

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # 64 MiB: ~800k gg->ggg events of FP64 momenta per request


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALSURR_", extra="forbid")

    repo: DirectoryPath = Field(description="model repository folder: <repo>/<model>/<version>/{model.onnx, card.json}")
    host: str = Field(default="127.0.0.1", description="address to bind; 0.0.0.0 for every interface")
    port: int = Field(default=8001, ge=0, le=65535, description="gRPC port; 0 picks a free one")
    providers: tuple[str, ...] = Field(
        default=PREFERRED_PROVIDERS, description="onnxruntime execution providers, in order of preference"
    )
    intra_op_threads: int = Field(default=0, ge=0, description="threads per onnxruntime session; 0: automatic")
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024, description="largest gRPC message")
    grace_seconds: float = Field(default=5.0, ge=0, description="time to finish accepted requests on shutdown")

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(providers=self.providers, intra_op_threads=self.intra_op_threads)
