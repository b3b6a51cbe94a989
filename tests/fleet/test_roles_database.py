"""database role: PostgreSQL 15 primary and streaming replica."""

import time
import uuid

import pytest

from tests.fleet.roles_fixtures import HOSTS, listening, ssh

pytestmark = pytest.mark.fleet


def psql(host: str, sql: str, db: str = "catalog") -> str:
    return ssh(host, f"runuser -u postgres -- psql -X -At -d {db} -c \"{sql}\"").stdout.strip()


@pytest.mark.parametrize("name", ["db-1", "db-2"])
def test_postgresql_running_enabled_and_listening_on_own_address_only(hosts, name):
    host = hosts[name]
    svc = host.service("postgresql@15-main")
    assert svc.is_running and svc.is_enabled
    assert listening(host, 5432) == {"127.0.0.1", "::1", HOSTS[name]}  # localhost and its own address


@pytest.mark.parametrize("name", ["db-1", "db-2"])
def test_settings(hosts, name):
    assert psql(name, "SHOW shared_buffers") == "512MB"  # a quarter of database_memory_limit_mb (2048)
    assert psql(name, "SHOW effective_cache_size") == "1536MB"
    assert psql(name, "SHOW max_connections") == "200"
    assert psql(name, "SHOW password_encryption") == "scram-sha-256"
    assert psql(name, "SELECT count(*) FROM pg_file_settings WHERE error IS NOT NULL") == "0"
    assert psql(name, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"


def test_pg_hba_admits_only_catalog_hosts_and_the_replica(hosts):
    rules = psql("db-1", "SELECT database[1] || ' ' || user_name[1] || ' ' || address FROM pg_hba_file_rules "
                         "WHERE type = 'host' AND address NOT IN ('127.0.0.1', '::1') ORDER BY 1")
    assert rules.splitlines() == ["catalog catalog 198.18.0.11", "catalog catalog 198.18.0.12",
                                  "replication replicator 198.18.0.16"]


def test_roles_and_database_exist():
    assert psql("db-1", "SELECT rolname FROM pg_roles WHERE rolname IN ('catalog', 'replicator') ORDER BY 1") \
        == "catalog\nreplicator"
    assert psql("db-1", "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'catalog'") \
        == "catalog"


def test_replica_streams_from_the_primary():
    assert psql("db-1", "SELECT application_name || ' ' || state FROM pg_stat_replication") == "db-2 streaming"
    assert psql("db-1", "SELECT slot_name || ' ' || active::text FROM pg_replication_slots") == "db_2 true"
    assert psql("db-2", "SELECT pg_is_in_recovery()") == "t"


def test_row_written_on_primary_appears_on_replica_within_a_second():
    psql("db-1", "CREATE TABLE IF NOT EXISTS roadie_replication_probe"
                 " (token text PRIMARY KEY, at timestamptz DEFAULT now())")
    token = uuid.uuid4().hex
    psql("db-1", f"INSERT INTO roadie_replication_probe (token) VALUES ('{token}')")
    written = time.monotonic()
    seen = None
    while time.monotonic() - written < 1.0:
        if psql("db-2", f"SELECT count(*) FROM roadie_replication_probe WHERE token = '{token}'") == "1":
            seen = time.monotonic() - written
            break
    assert seen is not None, "the row did not reach the replica within 1 s"


def test_replica_refuses_writes():
    proc = ssh("db-2", "runuser -u postgres -- psql -X -At -d catalog -c 'CREATE TABLE nope (x int)'", check=False)
    assert proc.returncode != 0 and "read-only transaction" in proc.stderr
