"""The streaming service against a moto S3: range requests, the bounded cache, health, seed-media, SIGTERM."""

import hashlib
import http.client
import io
import os
import signal
import socket
import threading
import time
import wave

import pytest
from werkzeug.test import Client

from tests import servicekit
from streaming import app as streaming_app
from streaming import seed_media
from streaming.cache import MediaCache, NotFound
from streaming.config import Config

TRACKS = 4


@pytest.fixture(scope="module")
def bucket(moto_endpoint):
    s3 = servicekit.s3(moto_endpoint)
    name = f"media-{os.getpid()}"
    s3.create_bucket(Bucket=name)
    seed_media.seed(s3, name, TRACKS, seconds=0.5, log=lambda _: None)
    return name


def make_client(endpoint, bucket, cache_dir, max_bytes=10 << 20):
    cfg = Config(bind="", media_bucket=bucket, cache_dir=str(cache_dir), cache_max_bytes=max_bytes,
                 workers=1, threads=1, graceful_timeout=1)
    return Client(streaming_app.create_app(cfg, s3_client=servicekit.s3(endpoint)))


@pytest.fixture
def client(moto_endpoint, bucket, tmp_path):
    return make_client(moto_endpoint, bucket, tmp_path / "cache")


@pytest.fixture(scope="module")
def audio():
    return seed_media.wav(1, seconds=0.5)


def test_whole_file_is_200(client, audio):
    resp = client.get("/stream/1")
    assert resp.status_code == 200
    assert resp.get_data() == audio
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Type"] == "audio/wav"
    assert int(resp.headers["Content-Length"]) == len(audio)


@pytest.mark.parametrize("header,start,end", [
    ("bytes=0-99", 0, 99),
    ("bytes=100-", 100, None),
    ("bytes=-50", -50, None),
    ("bytes=7-7", 7, 7),
    ("bytes=44-999999999", 44, None),
])
def test_range_is_206_with_exactly_those_bytes(client, audio, header, start, end):
    resp = client.get("/stream/1", headers={"Range": header})
    n = len(audio)
    first = start if start >= 0 else n + start
    last = n - 1 if end is None else end
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{n}"
    assert resp.get_data() == audio[first:last + 1]
    assert int(resp.headers["Content-Length"]) == last - first + 1


@pytest.mark.parametrize("header", ["bytes={n}-", "bytes={n}-{m}", "bytes=99999999-"])
def test_unsatisfiable_range_is_416(client, audio, header):
    n = len(audio)
    resp = client.get("/stream/1", headers={"Range": header.format(n=n, m=n + 10)})
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == f"bytes */{n}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "nonsense", "bytes=9-3"])
def test_ranges_not_served_are_ignored_with_the_whole_file(client, audio, header):
    resp = client.get("/stream/1", headers={"Range": header})
    assert resp.status_code == 200
    assert resp.get_data() == audio


def test_head_has_length_and_no_body(client, audio):
    resp = client.head("/stream/1")
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(audio)
    assert resp.get_data() == b""


@pytest.mark.parametrize("path,status", [("/stream/999", 404), ("/stream/abc", 404), ("/stream/", 404)])
def test_unknown_tracks(client, path, status):
    assert client.get(path).status_code == status


def test_second_request_is_served_from_the_cache(moto_endpoint, bucket, tmp_path):
    s3 = servicekit.s3(moto_endpoint)
    s3.put_object(Bucket=bucket, Key="tracks/500.wav", Body=seed_media.wav(500, 0.2))
    c = make_client(moto_endpoint, bucket, tmp_path)
    first = c.get("/stream/500").get_data()
    s3.delete_object(Bucket=bucket, Key="tracks/500.wav")
    assert c.get("/stream/500").get_data() == first
    assert c.get("/stream/500", headers={"Range": "bytes=0-3"}).get_data() == b"RIFF"


def test_media_store_down_is_502(bucket, tmp_path):
    c = make_client(f"http://127.0.0.1:{servicekit.free_port()}", bucket, tmp_path)
    assert c.get("/stream/1").status_code == 502


def test_healthz(moto_endpoint, bucket, tmp_path):
    assert make_client(moto_endpoint, bucket, tmp_path / "a").get("/healthz").status_code == 200
    assert make_client(moto_endpoint, "no-such-bucket", tmp_path / "b").get("/healthz").status_code == 503
    down = make_client(f"http://127.0.0.1:{servicekit.free_port()}", bucket, tmp_path / "c")
    assert down.get("/healthz").status_code == 503


def test_version(client):
    assert client.get("/version").json["service"] == "streaming"


@pytest.mark.parametrize("path", ["/version", "/healthz", "/stream/424242"])
def test_every_response_names_the_release(client, path):
    """The load generator and the deploy tests tell versions apart by this header."""
    from roadie import model

    header = model.load().service("streaming").version_header
    assert client.get(path).headers[header] == client.get("/version").json["version"]


def fake_store(objects):
    calls = []

    def fetch(key, out):
        calls.append(key)
        if key not in objects:
            raise NotFound(key)
        out.write(objects[key])
    return fetch, calls


def test_cache_stays_within_its_bound_evicting_least_recently_used(tmp_path):
    objects = {f"k{i}": bytes([i]) * 400 for i in range(5)}
    fetch, calls = fake_store(objects)
    cache = MediaCache(tmp_path, 1000, fetch)
    for key in ("k0", "k1", "k0", "k2"):  # k1 is now least recently used
        with cache.open(key) as f:
            assert f.read() == objects[key]
    assert cache.size() <= 1000
    assert sorted(e.name for e in cache.entries()) == ["k0", "k2"]
    assert calls == ["k0", "k1", "k2"]


def test_object_bigger_than_the_cache_is_served_but_not_kept(tmp_path):
    fetch, calls = fake_store({"big": b"x" * 5000})
    cache = MediaCache(tmp_path, 1000, fetch)
    for _ in range(2):
        with cache.open("big") as f:
            assert f.read() == b"x" * 5000
    assert cache.entries() == [] and calls == ["big", "big"]
    assert [p.name for p in tmp_path.iterdir()] == []


def test_failed_fetch_leaves_nothing_behind(tmp_path):
    def fetch(key, out):
        out.write(b"partial")
        raise ConnectionError("reset")

    cache = MediaCache(tmp_path, 1000, fetch)
    with pytest.raises(ConnectionError):
        cache.open("k")
    assert list(tmp_path.iterdir()) == []


def test_download_locks_do_not_pile_up(tmp_path):
    """Every distinct id asked, bogus ones included, used to leave a lock behind for good."""
    fetch, calls = fake_store({"k1": b"one"})
    cache = MediaCache(tmp_path, 1000, fetch)
    for i in range(1000):
        with pytest.raises(NotFound):
            cache.open(f"bogus{i}")
    cache.open("k1").close()
    assert len(calls) == 1001
    assert len(cache._locks) == 0


def test_concurrent_requests_for_one_key_share_one_download_and_its_lock(tmp_path):
    started, release = threading.Event(), threading.Event()
    calls = []

    def fetch(key, out):
        calls.append(key)
        started.set()
        release.wait(10)
        out.write(b"audio")

    cache = MediaCache(tmp_path, 1000, fetch)
    got = []

    def read():
        with cache.open("k") as f:
            got.append(f.read())

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    assert started.wait(10)
    time.sleep(0.2)  # the other seven are now waiting on the one lock
    assert len(cache._locks) == 1
    release.set()
    for t in threads:
        t.join(10)
    assert got == [b"audio"] * 8 and calls == ["k"]
    assert len(cache._locks) == 0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_missing_key_is_not_asked_for_again_until_the_ttl_passes(tmp_path):
    objects = {}
    fetch, calls = fake_store(objects)
    clock = Clock()
    cache = MediaCache(tmp_path, 1000, fetch, miss_ttl=10, clock=clock)
    for _ in range(3):
        with pytest.raises(NotFound):
            cache.open("k")
    assert calls == ["k"]
    objects["k"] = b"uploaded meanwhile"
    clock.now += 9.9
    with pytest.raises(NotFound):
        cache.open("k")
    clock.now += 0.1
    assert cache.open("k").read() == b"uploaded meanwhile"
    assert calls == ["k", "k"]


def test_the_missing_keys_remembered_are_bounded(tmp_path):
    fetch, calls = fake_store({})
    clock = Clock()
    cache = MediaCache(tmp_path, 1000, fetch, miss_ttl=10, max_misses=100, clock=clock)
    for i in range(1000):
        with pytest.raises(NotFound):
            cache.open(f"bogus{i}")
        assert len(cache._misses) <= 100
    with pytest.raises(NotFound):
        cache.open("bogus0")  # forgotten first, so asked again
    assert calls.count("bogus0") == 2
    clock.now += 10
    with pytest.raises(NotFound):
        cache.open("other")
    assert list(cache._misses) == ["other"]  # the expired ones went with the next miss


def test_a_failing_store_is_not_taken_for_a_missing_key(tmp_path):
    calls = []

    def fetch(key, out):
        calls.append(key)
        raise ConnectionError("reset")

    cache = MediaCache(tmp_path, 1000, fetch)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            cache.open("k")
    assert calls == ["k", "k"]


def test_repeated_requests_for_an_unknown_track_ask_s3_once(moto_endpoint, bucket, tmp_path):
    s3 = servicekit.s3(moto_endpoint)
    requests = []
    s3.meta.events.register("before-send.s3", lambda request, **_: requests.append(request.url))
    cfg = Config(bind="", media_bucket=bucket, cache_dir=str(tmp_path), cache_max_bytes=1 << 20,
                 workers=1, threads=1, graceful_timeout=1)
    c = Client(streaming_app.create_app(cfg, s3_client=s3))
    assert c.get("/stream/31337").status_code == 404
    asked = len(requests)
    assert asked >= 1 and all("31337" in url for url in requests)
    for _ in range(5):
        assert c.get("/stream/31337").status_code == 404
    assert len(requests) == asked


def test_seeded_media_is_real_audio():
    with wave.open(io.BytesIO(seed_media.wav(3, seconds=0.25))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, seed_media.RATE)
        assert w.getnframes() == int(0.25 * seed_media.RATE)


def test_seed_media_uploads_only_what_is_missing(moto_endpoint, bucket):
    s3 = servicekit.s3(moto_endpoint)
    assert seed_media.seed(s3, bucket, TRACKS + 2, seconds=0.1, log=lambda _: None) == 2
    assert seed_media.seed(s3, bucket, TRACKS + 2, seconds=0.1, log=lambda _: None) == 0


def test_range_request_through_gunicorn(moto_endpoint, bucket, tmp_path, audio):
    port = servicekit.free_port()
    env = servicekit.service_env("streaming", STREAMING_BIND=f"127.0.0.1:{port}", STREAMING_MEDIA_BUCKET=bucket,
                                 STREAMING_CACHE_DIR=tmp_path / "cache", STREAMING_WORKERS=2,
                                 AWS_ENDPOINT_URL=moto_endpoint)
    proc = servicekit.gunicorn("streaming", port, env, tmp_path / "gunicorn.log")
    try:
        base = f"http://127.0.0.1:{port}"
        assert servicekit.get(base + "/healthz")[0] == 200
        status, headers, data = servicekit.get(base + "/stream/1", {"Range": "bytes=10-19"})
        assert (status, headers["Content-Range"], data) == (206, f"bytes 10-19/{len(audio)}", audio[10:20])
        status, _, data = servicekit.get(base + "/stream/1")
        assert (status, data) == (200, audio)
        assert servicekit.get(base + "/stream/1", {"Range": f"bytes={len(audio)}-"})[0] == 416
    finally:
        assert servicekit.stop(proc) == 0


def test_sigterm_lets_a_stream_in_flight_finish(moto_endpoint, bucket, tmp_path):
    """gunicorn gets SIGTERM while a slow client is mid-way through a 5 MB track:
    the stream completes, byte for byte, and only then does gunicorn exit."""
    long_track = 9000
    audio = seed_media.wav(long_track, seconds=120)
    servicekit.s3(moto_endpoint).put_object(Bucket=bucket, Key=streaming_app.media_key(long_track), Body=audio)
    port = servicekit.free_port()
    env = servicekit.service_env("streaming", STREAMING_BIND=f"127.0.0.1:{port}", STREAMING_MEDIA_BUCKET=bucket,
                                 STREAMING_CACHE_DIR=tmp_path / "cache", STREAMING_WORKERS=1, STREAMING_THREADS=2,
                                 STREAMING_GRACEFUL_TIMEOUT=20, AWS_ENDPOINT_URL=moto_endpoint)
    proc = servicekit.gunicorn("streaming", port, env, tmp_path / "gunicorn.log")
    try:
        assert servicekit.get(f"http://127.0.0.1:{port}/stream/{long_track}", timeout=30)[0] == 200  # warm cache
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)  # keep the server's writes waiting on us
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.sock = sock
        conn.request("GET", f"/stream/{long_track}")
        resp = conn.getresponse()
        assert resp.status == 200
        body = hashlib.sha256(resp.read(256 << 10))
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, "gunicorn exited with a stream in flight"
        while chunk := resp.read(256 << 10):
            body.update(chunk)
            time.sleep(0.01)
        assert body.hexdigest() == hashlib.sha256(audio).hexdigest()
        assert proc.wait(20) == 0
    finally:
        servicekit.stop(proc)
