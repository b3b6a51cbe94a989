"""Forward-only schema migrations: versioned SQL files recorded in schema_migrations.

roadie runs this once per deploy, on the primary, before any host switches to
the new release; so every migration must also work with the previous
release's code (see services/catalog/README.md). An advisory lock makes a
second, concurrent run wait and then find nothing left to do.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_KEY = 7_331_001  # pg_advisory_lock key owned by catalog migrations


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(Exception):
    pass


def load(directory: Path = MIGRATIONS) -> list[Migration]:
    """NNNN_name.sql files in version order; a duplicate version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        version, _, name = path.stem.partition("_")
        if not version.isdigit() or not name:
            raise MigrationError(f"{path.name}: migration files are named NNNN_what.sql")
        if int(version) in found:
            raise MigrationError(f"{path.name}: version {int(version)} is used twice")
        found[int(version)] = Migration(version, name, path.read_text())
    return [found[v] for v in sorted(found)]


def plan(migrations: list[Migration], applied: dict[str, str]) -> list[Migration]:
    """What is left to apply; an applied migration whose file changed is an error."""
    for m in migrations:
        if m.version in applied and applied[m.version] != m.checksum:
            raise MigrationError(f"migration {m.version}_{m.name} was edited after it was applied; "
                                 "add a new migration instead")
    return [m for m in migrations if m.version not in applied]


CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def migrate(conn, migrations: list[Migration], log=print) -> list[str]:
    """Apply what is missing, each in its own transaction with its record."""
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        conn.execute(CREATE_TABLE)
        applied = {r[0]: r[1] for r in conn.execute("SELECT version, checksum FROM schema_migrations")}
        todo = plan(migrations, applied)
        for m in todo:
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                             (m.version, m.name, m.checksum))
            log(f"applied {m.version}_{m.name}")
        newer = sorted(set(applied) - {m.version for m in migrations})
        if newer:
            log(f"the database also has newer migrations {', '.join(newer)} (a later release's); left as they are")
        if not todo:
            log("schema is up to date")
        return [m.version for m in todo]
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def main(argv=None) -> int:
    import psycopg

    from catalog.config import from_env

    parser = argparse.ArgumentParser(prog="migrate", description="Apply the catalog's schema migrations.")
    parser.add_argument("--database-url", default=from_env().database_url,
                        help="default: CATALOG_DATABASE_URL")
    args = parser.parse_args(argv)
    try:
        with psycopg.connect(args.database_url, connect_timeout=10) as conn:
            migrate(conn, load())
    except (MigrationError, psycopg.Error) as exc:
        print(f"migrate: {exc}".strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
