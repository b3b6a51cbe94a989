"""The catalog's SQL: one function per question the API answers."""

from __future__ import annotations

TRACK_SELECT = """
SELECT t.id, t.title, t.track_no, t.duration_ms,
       a.id AS artist_id, a.name AS artist,
       al.id AS album_id, al.title AS album, al.year
FROM tracks t
JOIN artists a ON a.id = t.artist_id
JOIN albums al ON al.id = t.album_id
"""


def ping(conn) -> None:
    conn.execute("SELECT 1").fetchone()


def track(conn, track_id: int) -> dict | None:
    return conn.execute(TRACK_SELECT + " WHERE t.id = %s", (track_id,)).fetchone()


def album(conn, album_id: int) -> dict | None:
    row = conn.execute(
        "SELECT al.id, al.title, al.year, a.id AS artist_id, a.name AS artist "
        "FROM albums al JOIN artists a ON a.id = al.artist_id WHERE al.id = %s", (album_id,)).fetchone()
    if row is not None:
        row["tracks"] = conn.execute(TRACK_SELECT + " WHERE t.album_id = %s ORDER BY t.track_no, t.id",
                                     (album_id,)).fetchall()
    return row


def artist(conn, artist_id: int) -> dict | None:
    row = conn.execute("SELECT id, name FROM artists WHERE id = %s", (artist_id,)).fetchone()
    if row is not None:
        row["albums"] = conn.execute("SELECT id, title, year FROM albums WHERE artist_id = %s ORDER BY year, id",
                                     (artist_id,)).fetchall()
    return row


def like_pattern(q: str) -> str:
    """A substring ILIKE pattern with the user's own % and _ taken literally."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Each branch of the UNION can use its own trigram index (tracks.title,
# artists.name), where an OR across the join could use neither; and only the
# one page of ids is joined for display.
SEARCH = """
WITH hits AS (
    SELECT id, title FROM tracks WHERE title ILIKE %(p)s
    UNION
    SELECT t2.id, t2.title FROM tracks t2 JOIN artists a2 ON a2.id = t2.artist_id WHERE a2.name ILIKE %(p)s
), page AS (
    SELECT id FROM hits ORDER BY title, id LIMIT %(limit)s OFFSET %(offset)s
)
""" + TRACK_SELECT + """
WHERE t.id IN (SELECT id FROM page)
ORDER BY t.title, t.id
"""


def search(conn, q: str, page: int, per_page: int) -> tuple[list[dict], bool]:
    """One page of tracks whose title or artist contains q; and whether more follow."""
    rows = conn.execute(SEARCH, {"p": like_pattern(q), "limit": per_page + 1,
                                 "offset": (page - 1) * per_page}).fetchall()
    return rows[:per_page], len(rows) > per_page


def missing_tracks(conn, track_ids: list[int]) -> list[int]:
    found = {r["id"] for r in conn.execute("SELECT id FROM tracks WHERE id = ANY(%s)", (track_ids,))}
    return sorted(set(track_ids) - found)


def create_playlist(conn, name: str, track_ids: list[int]) -> int:
    with conn.transaction():
        pid = conn.execute("INSERT INTO playlists (name) VALUES (%s) RETURNING id", (name,)).fetchone()["id"]
        if track_ids:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO playlist_tracks (playlist_id, position, track_id) VALUES (%s, %s, %s)",
                                [(pid, pos, tid) for pos, tid in enumerate(track_ids, start=1)])
    return pid


def playlist(conn, playlist_id: int) -> dict | None:
    row = conn.execute("SELECT id, name, created_at FROM playlists WHERE id = %s", (playlist_id,)).fetchone()
    if row is not None:
        row["created_at"] = row["created_at"].isoformat()
        row["tracks"] = conn.execute(
            TRACK_SELECT.replace("FROM tracks t", "FROM playlist_tracks pt JOIN tracks t ON t.id = pt.track_id")
            + " WHERE pt.playlist_id = %s ORDER BY pt.position", (playlist_id,)).fetchall()
    return row


def playlists(conn, page: int, per_page: int) -> tuple[list[dict], bool]:
    rows = conn.execute("SELECT id, name, created_at FROM playlists ORDER BY id LIMIT %s OFFSET %s",
                        (per_page + 1, (page - 1) * per_page)).fetchall()
    for r in rows:
        r["created_at"] = r["created_at"].isoformat()
    return rows[:per_page], len(rows) > per_page
