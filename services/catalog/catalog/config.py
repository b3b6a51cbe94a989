"""Settings from the environment (the systemd unit's EnvironmentFile)."""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    bind: str
    database_url: str
    workers: int
    threads: int
    graceful_timeout: int


def from_env(env=os.environ) -> Config:
    return Config(
        bind=env.get("CATALOG_BIND", "0.0.0.0:8080"),
        database_url=env.get("CATALOG_DATABASE_URL", "postgresql:///catalog"),
        workers=int(env.get("CATALOG_WORKERS", "2")),
        threads=int(env.get("CATALOG_THREADS", "8")),
        graceful_timeout=int(env.get("CATALOG_GRACEFUL_TIMEOUT", "30")),
    )
