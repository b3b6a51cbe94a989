"""Settings from the environment (the systemd unit's EnvironmentFile).

AWS_ENDPOINT_URL and AWS_DEFAULT_REGION are read by boto3 itself; on AWS the
credentials come from the instance profile, locally from AWS_ACCESS_KEY_ID.
"""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    bind: str
    media_bucket: str
    cache_dir: str
    cache_max_bytes: int
    workers: int
    threads: int
    graceful_timeout: int


def from_env(env=os.environ) -> Config:
    return Config(
        bind=env.get("STREAMING_BIND", "0.0.0.0:8081"),
        media_bucket=env.get("STREAMING_MEDIA_BUCKET", ""),
        cache_dir=env.get("STREAMING_CACHE_DIR", "/srv/streaming/shared/cache"),
        cache_max_bytes=int(env.get("STREAMING_CACHE_MAX_BYTES", str(1 << 30))),
        workers=int(env.get("STREAMING_WORKERS", "2")),
        threads=int(env.get("STREAMING_THREADS", "16")),
        graceful_timeout=int(env.get("STREAMING_GRACEFUL_TIMEOUT", "30")),
    )
