"""A realistic, deterministic demo catalogue: same seed, same rows.

Benchmarks and demos need a library big enough that search has to use its
indexes (the default is 12,000 tracks); COPY keeps loading it to seconds.
"""

from __future__ import annotations

import argparse
import random
import sys

FIRST = ("Ada Ben Cleo Dario Elin Farah Gus Hana Ivo Juno Kai Lena Milo Nia Otto Pia Quinn Rosa "
         "Sami Tove Uma Vera Wim Xena Yara Zeno").split()
LAST = ("Alvarez Berg Castillo Duval Eriksen Fontaine Garcia Holm Ito Jansen Kowalski Lindqvist "
        "Moreau Novak Okafor Petrov Quist Rossi Silva Tanaka Ueda Varga Weber Young Zhou").split()
ADJ = ("Blue Broken Electric Silent Golden Midnight Neon Wild Velvet Hollow Burning Crystal Distant "
       "Endless Frozen Gentle Hidden Lonely Northern Paper Quiet Restless Secret Summer Wooden").split()
NOUN = ("River Heart Signal Garden Highway Echo Mirror Ocean Satellite Fire Window Harbor Machine "
        "Mountain Letter Shadow Station Thunder Valley Wave Lantern Orchard Parade Radio Tide").split()
BAND = ("Wolves Pilots Sisters Engines Ghosts Lovers Kings Arrows Swans Comets Foxes Strangers").split()


def artist_name(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return f"The {rng.choice(ADJ)} {rng.choice(BAND)}"


def title(rng: random.Random) -> str:
    shape = rng.randrange(4)
    if shape == 0:
        return f"{rng.choice(ADJ)} {rng.choice(NOUN)}"
    if shape == 1:
        return f"The {rng.choice(NOUN)} of {rng.choice(NOUN)}s"
    if shape == 2:
        return f"{rng.choice(NOUN)} in {rng.choice(ADJ)} {rng.choice(NOUN)}"
    return f"{rng.choice(ADJ)} {rng.choice(ADJ)} {rng.choice(NOUN)}"


def generate(tracks: int, seed: int = 1) -> tuple[list, list, list]:
    """(artists, albums, tracks) rows with ids from 1; about 10 tracks an album, 5 albums an artist."""
    rng = random.Random(seed)
    artists, albums, rows = [], [], []
    while len(rows) < tracks:
        artist_id = len(artists) + 1
        artists.append((artist_id, artist_name(rng)))
        for _ in range(rng.randint(2, 8)):
            album_id = len(albums) + 1
            albums.append((album_id, artist_id, title(rng), rng.randint(1965, 2024)))
            for no in range(1, rng.randint(6, 14) + 1):
                if len(rows) == tracks:
                    break
                rows.append((len(rows) + 1, album_id, artist_id, title(rng), no, rng.randint(90_000, 420_000)))
    return artists, albums, rows


def load(conn, tracks: int, seed: int = 1) -> int:
    """Fill an empty catalogue; returns the tracks added (0 if it had any already)."""
    if conn.execute("SELECT EXISTS (SELECT 1 FROM tracks)").fetchone()[0]:
        return 0
    artists, albums, rows = generate(tracks, seed)
    with conn.transaction():
        with conn.cursor() as cur:
            for table, cols, data in (("artists", "id, name", artists),
                                      ("albums", "id, artist_id, title, year", albums),
                                      ("tracks", "id, album_id, artist_id, title, track_no, duration_ms", rows)):
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in data:
                        copy.write_row(row)
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    conn.execute("ANALYZE artists, albums, tracks")
    return len(rows)


def main(argv=None) -> int:
    import psycopg

    from catalog.config import from_env

    parser = argparse.ArgumentParser(prog="seed", description="Load a demo catalogue into an empty database.")
    parser.add_argument("--tracks", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=from_env().database_url, help="default: CATALOG_DATABASE_URL")
    args = parser.parse_args(argv)
    if args.tracks < 1:
        parser.error("--tracks must be at least 1")
    try:
        with psycopg.connect(args.database_url, connect_timeout=10, autocommit=True) as conn:
            added = load(conn, args.tracks, args.seed)
    except psycopg.Error as exc:
        print(f"seed: {exc}".strip(), file=sys.stderr)
        return 1
    print(f"seeded {added} tracks" if added else "catalogue already has tracks; nothing seeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
