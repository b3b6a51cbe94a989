"""database role: PostgreSQL 15 primary and streaming replica."""

import re
import shutil
import time
import uuid

import pytest
import yaml

from tests.conftest import ROOT
from tests.fleet.roles_fixtures import HOSTS, STATE, converge, listening, ssh

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


CONFDIR = "/etc/postgresql/15/main"


def postmaster_pid(name: str) -> str:
    return ssh(name, "head -1 /var/lib/postgresql/15/main/postmaster.pid").stdout.strip()


def _drift_and_converge(name: str, files: list[str]) -> dict:
    ssh(name, " && ".join(f"echo '# roadie drift' >> {CONFDIR}/{f}" for f in files))
    doc = converge("--tags", "database_configure", "--limit", name)
    assert doc["returncode"] == 0 and doc["ok"], doc["stdout"] + doc["stderr"]
    assert doc["hosts"][name]["changed"] >= len(files)
    for f in files:
        assert ssh(name, f"grep -c 'roadie drift' {CONFDIR}/{f}", check=False).stdout.strip() == "0", f
    return doc


def test_pg_hba_and_ident_drift_reloads_without_restart(roles_fleet):
    before, loaded = postmaster_pid("db-2"), psql("db-2", "SELECT pg_conf_load_time()")
    _drift_and_converge("db-2", ["pg_hba.conf", "pg_ident.conf"])
    assert postmaster_pid("db-2") == before, "a pg_hba/pg_ident change restarted PostgreSQL"
    assert psql("db-2", "SELECT pg_conf_load_time()") != loaded, "the configuration was not reloaded"


def test_settings_drift_restarts(roles_fleet):
    before = postmaster_pid("db-2")
    _drift_and_converge("db-2", ["conf.d/roadie.conf"])
    assert postmaster_pid("db-2") != before
    assert psql("db-2", "SELECT pg_is_in_recovery()") == "t"


def test_template_paths_do_not_bake_the_version():
    role = ROOT / "roles" / "database"
    baked = [str(p.relative_to(role)) for p in (role / "templates").rglob("*") if re.search(r"/1\d(/|$)", str(p))]
    assert baked == []
    for tasks in (role / "tasks").glob("*.yml"):
        assert not re.search(r"postgresql/1\d", tasks.read_text()), f"{tasks.name} hard-codes a version path"


def _inventory_with(tmp_path, host: str, overrides: dict) -> dict:
    """A copy of the local inventory (symlinks resolved) with host_vars for HOST: env for run_roadie."""
    shutil.copytree(ROOT / "inventories" / "local", tmp_path / "local", symlinks=False)
    (tmp_path / "local" / "host_vars").mkdir()
    # The inventory finds the fleet's keys relative to itself: point the copy at them.
    overrides = {"roadie_state_dir": str(STATE), **overrides}
    (tmp_path / "local" / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(overrides))
    return {"ROADIE_INVENTORIES": str(tmp_path)}


@pytest.mark.parametrize(("target", "overrides", "bad"), [
    ("conf.d/roadie.conf", {"database_extra_settings": {"roadie_no_such_setting": "1"}}, "roadie_no_such_setting"),
    ("pg_hba.conf", {"database_user": "catalog bogus"}, "bogus"),
])
def test_bad_configuration_never_reaches_the_cluster(roles_fleet, tmp_path, target, overrides, bad):
    path = f"{CONFDIR}/{target}"
    digest, pid = ssh("db-2", f"sha256sum {path}").stdout.split()[0], postmaster_pid("db-2")
    try:
        env = _inventory_with(tmp_path, "db-2", overrides)
        doc = converge("--tags", "database_configure", "--limit", "db-2", env=env)
        assert doc["returncode"] != 0 and doc["hosts"]["db-2"]["failed"] == 1, doc["stdout"] + doc["stderr"]
        assert ssh("db-2", f"sha256sum {path}").stdout.split()[0] == digest, f"a bad {target} was installed"
        assert ssh("db-2", f"grep -c -- '{bad}' {path}", check=False).stdout.strip() == "0"
        assert postmaster_pid("db-2") == pid
        assert psql("db-2", "SELECT pg_is_in_recovery()") == "t"
    finally:
        restored = converge("--tags", "database", "--limit", "db-2")
        assert restored["returncode"] == 0, restored["stdout"] + restored["stderr"]


@pytest.mark.parametrize(("kind", "content", "ok"), [
    ("ident", "roadie_admin postgres postgres\n", True),
    ("ident", "roadie_admin postgres\n", False),
    ("hba", "local all all peer\n", True),
    ("hba", "host all all 198.18.0.999/32 scram-sha-256\n", False),
    ("conf", "work_mem = 4MB\n", True),
    ("conf", "work_mem = 4 parsecs\n", False),
])
def test_config_checker(roles_fleet, kind, content, ok):
    name = " roadie.conf" if kind == "conf" else ""
    proc = ssh("db-2", f"f=$(mktemp) && printf '{content}' > $f && /usr/local/sbin/roadie-pg-check {kind} $f{name}; "
                       f"rc=$?; rm -f $f; exit $rc", check=False)
    assert (proc.returncode == 0) == ok, proc.stderr
