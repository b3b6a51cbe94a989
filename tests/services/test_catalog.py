"""The catalog API against a real PostgreSQL: lookups, search, playlists, health, migrations, SIGTERM."""

import http.client
import io
import json
import signal
import socket
import threading
import time

import psycopg
import pytest
from werkzeug.test import Client

from tests import servicekit
from catalog import app as catalog_app
from catalog import migrate, seed, store

TRACKS = 3000


@pytest.fixture(scope="module")
def db_url(pg):
    url = pg.create_database("catalog_api")
    with psycopg.connect(url) as conn:
        migrate.migrate(conn, migrate.load(), log=lambda _: None)
        assert seed.load(conn, TRACKS) == TRACKS
    return url


@pytest.fixture(scope="module")
def client(db_url):
    return Client(catalog_app.create_app(db_url))


def body(resp):
    return json.loads(resp.get_data())


def test_track_lookup_joins_artist_and_album(client, db_url):
    with psycopg.connect(db_url) as conn:
        want = conn.execute("SELECT t.title, a.name FROM tracks t JOIN artists a ON a.id = t.artist_id "
                            "WHERE t.id = 42").fetchone()
    resp = client.get("/api/tracks/42")
    assert resp.status_code == 200
    got = body(resp)
    assert (got["id"], got["title"], got["artist"], got["stream"]) == (42, want[0], want[1], "/stream/42")


@pytest.mark.parametrize("path,status", [
    ("/api/tracks/999999", 404),
    ("/api/tracks/abc", 404),
    ("/api/albums/999999", 404),
    ("/api/playlists/999999", 404),
    ("/api/search", 400),
    ("/api/search?q=", 400),
    ("/api/search?q=" + "x" * 101, 400),
    ("/api/search?q=blue&page=0", 400),
    ("/api/search?q=blue&page=two", 400),
    ("/api/search?q=blue&per_page=1000", 400),
    ("/nope", 404),
])
def test_bad_requests_get_json_errors(client, path, status):
    resp = client.get(path)
    assert resp.status_code == status
    assert "error" in body(resp)


@pytest.mark.parametrize("path,query", [("/api/search", {"q": "blue"}), ("/api/playlists", {})])
@pytest.mark.parametrize("name,value", [
    ("page", "0"),
    ("page", "-1"),
    ("page", "two"),
    ("page", ""),
    ("page", "1.5"),
    ("page", " 2"),
    ("page", "1_000"),
    ("page", "\u0663"),  # ARABIC-INDIC DIGIT THREE, which int() accepts
    ("page", str(catalog_app.MAX_PAGE + 1)),
    ("page", "99999999999999999999"),  # past bigint: was a 500 from PostgreSQL
    ("page", "9" * 5000),  # past int()'s digit limit
    ("per_page", "0"),
    ("per_page", "ten"),
    ("per_page", str(catalog_app.MAX_PER_PAGE + 1)),
    ("per_page", "99999999999999999999"),
])
def test_page_parameters_out_of_range_are_400(client, path, query, name, value):
    maximum = catalog_app.MAX_PAGE if name == "page" else catalog_app.MAX_PER_PAGE
    resp = client.get(path, query_string={**query, name: value})
    assert resp.status_code == 400
    assert body(resp) == {"error": f"{name} must be a whole number from 1 to {maximum}"}


def test_the_last_page_allowed_offers_no_next_page(client, monkeypatch):
    """next_page must never point at a page the API refuses."""
    monkeypatch.setattr(catalog_app, "MAX_PAGE", 2)
    got = body(client.get("/api/search?q=River&page=2&per_page=1"))
    assert len(got["results"]) == 1 and got["next_page"] is None
    assert client.get("/api/search?q=River&page=3&per_page=1").status_code == 400


def test_chunked_body_past_the_limit_is_413(client, db_url):
    """No Content-Length to refuse up front: the limit holds while the body is read, and a body
    cut off at the limit is not taken for the whole (here that prefix is valid JSON)."""
    payload = json.dumps({"name": "padded", "track_ids": [1]}).encode() + b" " * catalog_app.MAX_BODY
    resp = client.post("/api/playlists", input_stream=io.BytesIO(payload), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 413
    assert "error" in body(resp)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM playlists WHERE name = 'padded'").fetchone()[0] == 0


def test_album_and_artist(client):
    album = body(client.get("/api/albums/1"))
    assert album["tracks"] and all(t["album_id"] == 1 for t in album["tracks"])
    assert [t["track_no"] for t in album["tracks"]] == sorted(t["track_no"] for t in album["tracks"])
    artist = body(client.get(f"/api/artists/{album['artist_id']}"))
    assert 1 in [a["id"] for a in artist["albums"]]


def test_search_is_paginated_and_matches_title_or_artist(client, db_url):
    with psycopg.connect(db_url) as conn:
        expected = [r[0] for r in conn.execute(
            "SELECT t.id FROM tracks t JOIN artists a ON a.id = t.artist_id "
            "WHERE t.title ILIKE '%river%' OR a.name ILIKE '%river%' ORDER BY t.title, t.id")]
    assert len(expected) > 50
    seen, page = [], 1
    while page:
        got = body(client.get(f"/api/search?q=River&page={page}&per_page=25"))
        assert len(got["results"]) <= 25
        seen += [r["id"] for r in got["results"]]
        page = got["next_page"]
    assert seen == expected


def test_search_finds_by_artist_name(client, db_url):
    with psycopg.connect(db_url) as conn:
        name, count = conn.execute("SELECT a.name, count(*) FROM artists a JOIN tracks t ON t.artist_id = a.id "
                                   "GROUP BY a.id ORDER BY a.id LIMIT 1").fetchone()
    got = body(client.get("/api/search", query_string={"q": name, "per_page": 100}))
    assert sum(r["artist"] == name for r in got["results"]) == count


def test_search_takes_wildcards_literally(client):
    assert body(client.get("/api/search?q=%25"))["results"] == []
    assert body(client.get("/api/search?q=_"))["results"] == []


def test_search_can_use_the_trigram_index(db_url):
    """At 3,000 rows a scan is cheaper; with scans priced out the query must still be indexable."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + store.SEARCH, {"p": "%zebra crossing%", "limit": 21, "offset": 0}))
    assert "Bitmap Index Scan on tracks_title_trgm" in plan, plan


def test_playlist_create_and_read(client):
    resp = client.post("/api/playlists", json={"name": " Road trip ", "track_ids": [3, 1, 2]})
    assert resp.status_code == 201
    created = body(resp)
    assert resp.headers["Location"] == f"/api/playlists/{created['id']}"
    got = body(client.get(resp.headers["Location"]))
    assert got["name"] == "Road trip"
    assert [t["id"] for t in got["tracks"]] == [3, 1, 2]
    assert created["id"] in [p["id"] for p in body(client.get("/api/playlists?per_page=100"))["results"]]


@pytest.mark.parametrize("payload,status", [
    ("not json", 400),
    ({"track_ids": [1]}, 400),
    ({"name": "", "track_ids": [1]}, 400),
    ({"name": "x", "track_ids": "1,2"}, 400),
    ({"name": "x", "track_ids": [1, True]}, 400),
    ({"name": "x", "track_ids": [1, 99999999]}, 422),
])
def test_playlist_bad_input_changes_nothing(client, db_url, payload, status):
    with psycopg.connect(db_url) as conn:
        before = conn.execute("SELECT count(*) FROM playlists").fetchone()[0]
    if isinstance(payload, str):
        resp = client.post("/api/playlists", data=payload, content_type="application/json")
    else:
        resp = client.post("/api/playlists", json=payload)
    assert resp.status_code == status
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM playlists").fetchone()[0] == before


def test_healthz_ok_and_503_when_database_is_down(client):
    assert client.get("/healthz").status_code == 200
    down = Client(catalog_app.create_app(f"postgresql://postgres@127.0.0.1:{servicekit.free_port()}/catalog"))
    resp = down.get("/healthz")
    assert resp.status_code == 503
    assert body(resp)["database"] == "unreachable"
    assert down.get("/api/tracks/1").status_code == 503


def test_healthz_recovers_after_connections_are_killed(client, pg):
    assert client.get("/healthz").status_code == 200
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = 'catalog_api' AND pid <> pg_backend_pid()")
    first = client.get("/healthz").status_code
    assert first in (200, 503)
    assert client.get("/healthz").status_code == 200


def test_version_without_a_release_manifest(client):
    assert body(client.get("/version"))["service"] == "catalog"


@pytest.mark.parametrize("path", ["/version", "/api/tracks/1", "/api/tracks/999999", "/nowhere"])
def test_every_response_names_the_release(client, path):
    """The load generator and the deploy tests tell versions apart by this header."""
    from roadie import model

    header = model.load().service("catalog").version_header
    assert client.get(path).headers[header] == body(client.get("/version"))["version"]


def test_migrations_apply_once_and_are_recorded(pg):
    url = pg.create_database("catalog_migrate")
    with psycopg.connect(url) as conn:
        assert migrate.migrate(conn, migrate.load(), log=lambda _: None) == ["0001", "0002"]
        assert migrate.migrate(conn, migrate.load(), log=lambda _: None) == []
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [("0001", "catalog"), ("0002", "search_indexes")]


def test_concurrent_migrate_runs_apply_each_migration_once(pg):
    url = pg.create_database("catalog_migrate_race")
    results = []

    def run():
        with psycopg.connect(url) as conn:
            results.append(migrate.migrate(conn, migrate.load(), log=lambda _: None))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [[], [], ["0001", "0002"]]


def test_edited_migration_is_refused(pg, tmp_path):
    url = pg.create_database("catalog_migrate_edit")
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (id int);")
    with psycopg.connect(url) as conn:
        migrate.migrate(conn, migrate.load(tmp_path), log=lambda _: None)
        (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (id bigint);")
        with pytest.raises(migrate.MigrationError, match="edited after it was applied"):
            migrate.migrate(conn, migrate.load(tmp_path), log=lambda _: None)


@pytest.mark.parametrize("names,error", [
    (["1_a.sql", "0001_b.sql"], "used twice"),
    (["abc.sql"], "named NNNN_what.sql"),
])
def test_bad_migration_files(tmp_path, names, error):
    for n in names:
        (tmp_path / n).write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match=error):
        migrate.load(tmp_path)


def test_failed_migration_is_not_recorded(pg, tmp_path):
    url = pg.create_database("catalog_migrate_fail")
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.Error):
            migrate.migrate(conn, migrate.load(tmp_path), log=lambda _: None)
        conn.rollback()
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == ["0001"]
        assert conn.execute("SELECT to_regclass('half')").fetchone()[0] is None


def test_seed_is_deterministic_and_only_fills_an_empty_catalogue(db_url):
    assert seed.generate(500, seed=7) == seed.generate(500, seed=7)
    assert seed.generate(500, seed=7) != seed.generate(500, seed=8)
    with psycopg.connect(db_url) as conn:
        assert seed.load(conn, 10) == 0
        assert conn.execute("SELECT count(*) FROM tracks").fetchone()[0] == TRACKS


def test_sigterm_lets_a_slow_request_finish(db_url, tmp_path, monkeypatch):
    """gunicorn gets SIGTERM while a 2 s query is in flight: the client still gets its 200."""
    port = servicekit.free_port()
    env = servicekit.service_env("catalog", CATALOG_BIND=f"127.0.0.1:{port}", CATALOG_DATABASE_URL=db_url,
                                 CATALOG_WORKERS=1, CATALOG_THREADS=2, CATALOG_GRACEFUL_TIMEOUT=20)
    proc = servicekit.gunicorn("catalog", port, env, tmp_path / "gunicorn.log")
    try:
        assert servicekit.get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        with psycopg.connect(db_url, autocommit=True) as conn:
            # A slow album: its rows are behind a lock the test holds for 2 s.
            result = {}
            with conn.transaction():
                conn.execute("LOCK TABLE albums IN ACCESS EXCLUSIVE MODE")

                def slow():
                    result["resp"] = servicekit.get(f"http://127.0.0.1:{port}/api/albums/1", timeout=30)

                t = threading.Thread(target=slow)
                t.start()
                time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                time.sleep(1.5)
                assert proc.poll() is None, "gunicorn exited with a request in flight"
            t.join(30)
        assert result["resp"][0] == 200
        assert json.loads(result["resp"][2])["id"] == 1
        assert proc.wait(20) == 0
    finally:
        servicekit.stop(proc)


def test_body_claiming_20_mb_is_413_before_it_is_read(db_url, tmp_path):
    """Through gunicorn: the answer comes from Content-Length alone, with one byte of the body sent.
    A server that read the body would wait for the rest and the client would time out."""
    port = servicekit.free_port()
    env = servicekit.service_env("catalog", CATALOG_BIND=f"127.0.0.1:{port}", CATALOG_DATABASE_URL=db_url,
                                 CATALOG_WORKERS=1, CATALOG_THREADS=2, CATALOG_GRACEFUL_TIMEOUT=2)
    proc = servicekit.gunicorn("catalog", port, env, tmp_path / "gunicorn.log")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /api/playlists HTTP/1.1\r\nHost: catalog\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n{" % (20 << 20))
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            assert resp.status == 413
            assert "error" in json.loads(resp.read())
    finally:
        servicekit.stop(proc)
