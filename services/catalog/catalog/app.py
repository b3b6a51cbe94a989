"""The catalog's WSGI application: JSON over HTTP under /api, plus health and version.

HAProxy routes /api to these hosts without rewriting, so the paths here are
the public ones.
"""

from __future__ import annotations

import json
import logging

import psycopg
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from catalog import release, store
from catalog.config import from_env
from catalog.db import Database

log = logging.getLogger("catalog")

MAX_PER_PAGE = 100
MAX_PAGE = 10_000  # keeps OFFSET within bigint and the scan within the statement timeout
MAX_QUERY = 100
MAX_PLAYLIST = 1000
MAX_BODY = 1 << 20  # bytes; a full playlist is some 10 KB of JSON

URLS = Map([
    Rule("/healthz", endpoint="healthz", methods=["GET"]),
    Rule("/version", endpoint="version", methods=["GET"]),
    Rule("/api/tracks/<int:item_id>", endpoint="track", methods=["GET"]),
    Rule("/api/albums/<int:item_id>", endpoint="album", methods=["GET"]),
    Rule("/api/artists/<int:item_id>", endpoint="artist", methods=["GET"]),
    Rule("/api/search", endpoint="search", methods=["GET"]),
    Rule("/api/playlists", endpoint="playlists", methods=["GET"]),
    Rule("/api/playlists", endpoint="create_playlist", methods=["POST"]),
    Rule("/api/playlists/<int:item_id>", endpoint="playlist", methods=["GET"]),
])


def as_json(data, status: int = 200, headers=None) -> Response:
    return Response(json.dumps(data, default=str), status=status, headers=headers,
                    mimetype="application/json")


class CatalogRequest(Request):
    """Werkzeug answers 413 to a Content-Length past max_content_length before reading a byte, but cuts
    a chunked body off at that length without a word: so it is one byte past MAX_BODY, and
    on_create_playlist refuses a body that reaches it."""

    max_content_length = MAX_BODY + 1


def positive_int(args, name: str, default: int, maximum: int) -> int:
    """ASCII digits only: int() alone would also take " 7", "1_000" and other scripts' digits."""
    raw = args.get(name, str(default))
    try:
        value = int(raw) if raw.isascii() and raw.isdigit() else 0
    except ValueError:  # more digits than int() converts
        value = 0
    if not 1 <= value <= maximum:
        raise BadRequest(f"{name} must be a whole number from 1 to {maximum}")
    return value


class Catalog:
    def __init__(self, db: Database):
        self.db = db
        self.release = release.info()

    def __call__(self, environ, start_response):
        request = CatalogRequest(environ)
        try:
            endpoint, values = URLS.bind_to_environ(environ).match()
            response = getattr(self, "on_" + endpoint)(request, **values)
        except HTTPException as exc:
            response = as_json({"error": exc.description}, status=exc.code)
        except psycopg.OperationalError as exc:
            log.error("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            response = as_json({"error": "database unavailable"}, status=503, headers={"Retry-After": "5"})
        response.headers[release.HEADER] = self.release["version"]
        return response(environ, start_response)

    def on_healthz(self, request):
        try:
            self.db.run(store.ping)
        except psycopg.Error:
            return as_json({"status": "unavailable", "database": "unreachable"}, status=503)
        return as_json({"status": "ok", "database": "ok"})

    def on_version(self, request):
        return as_json(self.release)

    def _found(self, row, what: str, item_id: int):
        if row is None:
            raise NotFound(f"no {what} with id {item_id}")
        return as_json(row)

    def on_track(self, request, item_id):
        row = self.db.run(store.track, item_id)
        if row is not None:
            row["stream"] = f"/stream/{item_id}"
        return self._found(row, "track", item_id)

    def on_album(self, request, item_id):
        return self._found(self.db.run(store.album, item_id), "album", item_id)

    def on_artist(self, request, item_id):
        return self._found(self.db.run(store.artist, item_id), "artist", item_id)

    def on_search(self, request):
        q = request.args.get("q", "").strip()
        if not q:
            raise BadRequest("q is required: the text to look for in track titles and artist names")
        if len(q) > MAX_QUERY:
            raise BadRequest(f"q must be at most {MAX_QUERY} characters")
        page = positive_int(request.args, "page", 1, MAX_PAGE)
        per_page = positive_int(request.args, "per_page", 20, MAX_PER_PAGE)
        rows, more = self.db.run(store.search, q, page, per_page)
        return as_json({"q": q, "page": page, "per_page": per_page, "results": rows,
                        "next_page": page + 1 if more and page < MAX_PAGE else None})

    def on_playlists(self, request):
        page = positive_int(request.args, "page", 1, MAX_PAGE)
        per_page = positive_int(request.args, "per_page", 20, MAX_PER_PAGE)
        rows, more = self.db.run(store.playlists, page, per_page)
        return as_json({"page": page, "per_page": per_page, "results": rows,
                        "next_page": page + 1 if more and page < MAX_PAGE else None})

    def on_create_playlist(self, request):
        if len(request.get_data()) > MAX_BODY:
            raise RequestEntityTooLarge(f"the body must be at most {MAX_BODY} bytes")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest('send a JSON object: {"name": "...", "track_ids": [1, 2]}')
        name = body.get("name")
        track_ids = body.get("track_ids", [])
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise BadRequest("name must be a non-empty string of at most 200 characters")
        if (not isinstance(track_ids, list) or len(track_ids) > MAX_PLAYLIST
                or not all(isinstance(t, int) and not isinstance(t, bool) for t in track_ids)):
            raise BadRequest(f"track_ids must be a list of at most {MAX_PLAYLIST} track ids")
        missing = self.db.run(store.missing_tracks, track_ids) if track_ids else []
        if missing:
            return as_json({"error": f"no tracks with ids {missing}"}, status=422)
        pid = self.db.run(store.create_playlist, name.strip(), track_ids)
        return as_json(self.db.run(store.playlist, pid), status=201,
                       headers={"Location": f"/api/playlists/{pid}"})

    def on_playlist(self, request, item_id):
        return self._found(self.db.run(store.playlist, item_id), "playlist", item_id)


def create_app(database_url: str | None = None) -> Catalog:
    return Catalog(Database(database_url or from_env().database_url))


# What bin/serve gives gunicorn. Connections open lazily, per worker thread.
app = create_app()
