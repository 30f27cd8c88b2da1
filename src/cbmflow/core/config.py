"""Settings read from the environment (never from code): database DSN, S3 endpoint, paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/cbmflow"


def project_root() -> Path:
    """The repository root (where include/ lives), or CBMFLOW_HOME if set."""
    env = os.environ.get("CBMFLOW_HOME")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3]


def include_dir() -> Path:
    """The include/ folder holding SQL migrations and SNAP graphs."""
    return project_root() / "include"


def shared_data_dir() -> Path:
    """The shared sample-data folder (../shared/data from the project root)."""
    env = os.environ.get("CBMFLOW_SHARED_DATA")
    return Path(env) if env else project_root().parent / "shared" / "data"


def database_dsn() -> str:
    """The results database DSN from CBMFLOW_DSN (default: local cbmflow database)."""
    return os.environ.get("CBMFLOW_DSN", DEFAULT_DSN)


@dataclass(frozen=True)
class S3Settings:
    """Where and how to reach S3-protocol object storage."""

    endpoint_url: str | None
    region: str
    access_key: str | None
    secret_key: str | None
    session_token: str | None = None

    @property
    def https(self) -> bool:
        """Whether the endpoint uses TLS."""
        return self.endpoint_url is None or self.endpoint_url.startswith("https://")

    @property
    def host(self) -> str | None:
        """The endpoint's host[:port] without scheme, as GDAL wants it."""
        if self.endpoint_url is None:
            return None
        return self.endpoint_url.split("://", 1)[-1].rstrip("/")

    def redacted(self) -> str:
        """A description safe for logs (no secrets)."""
        return f"S3(endpoint={self.endpoint_url or 'aws-default'}, region={self.region}, key={'set' if self.access_key else 'unset'})"


def s3_settings() -> S3Settings:
    """S3 settings from the standard AWS environment variables."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return S3Settings(
        endpoint_url=endpoint or None,
        region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        session_token=os.environ.get("AWS_SESSION_TOKEN"),
    )
