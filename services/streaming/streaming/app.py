"""The streaming WSGI application: /stream/TRACK_ID with HTTP range requests.

Audio players seek with Range requests, so a range must come back as 206
with exactly those bytes; one that starts past the end is 416. Ranges this
service does not serve (several at once, or malformed) are ignored as RFC 9110
allows, and the whole file is sent with 200.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from werkzeug.exceptions import HTTPException, NotFound as HTTPNotFound
from werkzeug.http import parse_range_header
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from streaming import release
from streaming.cache import MediaCache, NotFound
from streaming.config import from_env

log = logging.getLogger("streaming")

URLS = Map([
    Rule("/healthz", endpoint="healthz", methods=["GET"]),
    Rule("/version", endpoint="version", methods=["GET"]),
    Rule("/stream/<int:track_id>", endpoint="stream", methods=["GET", "HEAD"]),
])

HEALTH_TTL = 5.0  # seconds a bucket check is reused; load balancers poll often


def media_key(track_id: int) -> str:
    return f"tracks/{track_id}.wav"


def servable_range(header: str | None) -> bool:
    """Whether a Range header is one this service answers with 206 or 416."""
    parsed = parse_range_header(header)
    return parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1


def as_json(data, status=200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


class S3Media:
    """The media bucket; boto3 takes AWS_ENDPOINT_URL and AWS_DEFAULT_REGION from the environment."""

    def __init__(self, bucket: str, client=None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.s3 = client or boto3.client("s3", config=Config(connect_timeout=3, read_timeout=30,
                                                             retries={"max_attempts": 2}))

    def fetch(self, key, out) -> None:
        from botocore.exceptions import ClientError

        try:
            self.s3.download_fileobj(self.bucket, key, out)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise NotFound(key) from None
            raise

    def check(self) -> None:
        self.s3.head_bucket(Bucket=self.bucket)


class Streaming:
    def __init__(self, media: S3Media, cache: MediaCache):
        self.media = media
        self.cache = cache
        self.release = release.info()
        self._health = (0.0, None)

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, values = URLS.bind_to_environ(environ).match()
            response = getattr(self, "on_" + endpoint)(request, **values)
        except HTTPException as exc:
            response = as_json({"error": exc.description}, status=exc.code)
            for name, value in exc.get_headers(environ):  # e.g. 416's Content-Range: bytes */SIZE
                if name.lower() != "content-type":
                    response.headers[name] = value
        response.headers[release.HEADER] = self.release["version"]
        return response(environ, start_response)

    def on_version(self, request):
        return as_json(self.release)

    def on_healthz(self, request):
        """200 when the cache directory is writable and the media bucket answers."""
        checked_at, error = self._health
        if time.monotonic() - checked_at > HEALTH_TTL:
            error = None
            try:
                self.cache.dir.mkdir(parents=True, exist_ok=True)
                (self.cache.dir / ".healthz").write_bytes(b"ok")
            except OSError as exc:
                error = f"cache directory not writable: {exc.strerror}"
            if error is None:
                try:
                    self.media.check()
                except Exception as exc:  # any failure to reach the bucket means unhealthy
                    error = f"media bucket unreachable: {type(exc).__name__}"
            self._health = (time.monotonic(), error)
        if error:
            return as_json({"status": "unavailable", "error": error}, status=503)
        return as_json({"status": "ok"})

    def on_stream(self, request, track_id):
        try:
            f = self.cache.open(media_key(track_id))
        except NotFound:
            raise HTTPNotFound(f"no audio for track {track_id}") from None
        except Exception as exc:
            log.error("fetching %s failed: %s", media_key(track_id), exc)
            f = None
        if f is None:
            resp = as_json({"error": "media store unavailable"}, status=502)
            resp.headers["Retry-After"] = "5"
            return resp
        size = os.fstat(f.fileno()).st_size
        environ = request.environ
        if "HTTP_RANGE" in environ and not servable_range(environ["HTTP_RANGE"]):
            environ = dict(environ)
            del environ["HTTP_RANGE"]
        resp = Response(wrap_file(environ, f), mimetype="audio/wav", direct_passthrough=True)
        resp.content_length = size
        resp.cache_control.public = True
        resp.cache_control.max_age = 86400
        try:
            return resp.make_conditional(environ, accept_ranges=True, complete_length=size)
        except HTTPException:
            f.close()
            raise


def create_app(config=None, s3_client=None) -> Streaming:
    cfg = config or from_env()
    media = S3Media(cfg.media_bucket, client=s3_client)
    return Streaming(media, MediaCache(cfg.cache_dir, cfg.cache_max_bytes, media.fetch))


class _Lazy:
    """What bin/serve gives gunicorn: built on first request, in the worker, after fork."""

    def __init__(self):
        self._app = None
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app()
        return self._app(environ, start_response)


app = _Lazy()
