"""database role: PostgreSQL 15 run by Patroni over a three-member etcd cluster."""

import base64
import re
import shlex
import shutil
import time
import uuid

import pytest
import yaml

from roadie import paths
from tests.conftest import ROOT
from tests.fleet.dbkit import leader, members, psql, replicas
from tests.fleet.roles_fixtures import HOSTS, STATE, TIERS, connect_from, converge, listening, ssh, wait_for

pytestmark = pytest.mark.fleet
DB = TIERS["database"]


@pytest.mark.parametrize("name", DB)
def test_patroni_and_etcd_run_and_postgresql_listens_on_own_address_only(hosts, name):
    host = hosts[name]
    for unit in ("patroni", "etcd"):
        svc = host.service(unit)
        assert svc.is_running and svc.is_enabled, unit
    # Patroni runs PostgreSQL itself: Debian's per-cluster unit stays off.
    assert not host.service("postgresql@15-main").is_running
    assert listening(host, 5432) == {"127.0.0.1", "::1", HOSTS[name]}
    assert listening(host, 8008) == {HOSTS[name]}


def test_etcd_has_every_database_host_as_a_started_member():
    out = ssh(DB[0], "etcdctl --endpoints=http://127.0.0.1:2379 member list").stdout
    assert sorted(line.split(", ")[2] for line in out.splitlines() if ", started, " in line) == sorted(DB)
    health = ssh(DB[0], "etcdctl --endpoints=" + ",".join(f"http://{HOSTS[h]}:2379" for h in DB)
                 + " endpoint health 2>&1").stdout
    assert health.count("is healthy") == len(DB), health


def test_one_leader_one_sync_standby_all_streaming_on_one_timeline(hosts):
    wait_for(lambda: any(m["Role"] == "Sync Standby" for m in members()), timeout=30, what="a sync standby")
    found = members()
    assert sorted(m["Member"] for m in found) == sorted(DB)
    roles = sorted(m["Role"] for m in found)
    assert roles == ["Leader", "Replica", "Sync Standby"], found
    assert {m["State"] for m in found} == {"running"} or {m["State"] for m in found} <= {"running", "streaming"}
    assert len({m["TL"] for m in found}) == 1


@pytest.mark.parametrize("name", DB)
def test_settings(hosts, name):
    assert psql(name, "SHOW shared_buffers") == "512MB"  # a quarter of database_memory_limit_mb (2048)
    assert psql(name, "SHOW effective_cache_size") == "1536MB"
    assert psql(name, "SHOW max_connections") == "200"
    assert psql(name, "SHOW password_encryption") == "scram-sha-256"
    assert psql(name, "SHOW data_checksums") == "on"
    assert psql(name, "SHOW hba_file") == "/etc/postgresql/15/main/pg_hba.conf"
    assert psql(name, "SELECT count(*) FROM pg_file_settings WHERE error IS NOT NULL") == "0"
    assert psql(name, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"


def test_synchronous_commit_waits_for_a_standby(hosts):
    lead = leader()
    assert psql(lead, "SHOW synchronous_standby_names").strip('"') in replicas()
    assert "sync" in psql(lead, "SELECT sync_state FROM pg_stat_replication").split()


def test_pg_hba_admits_only_catalog_hosts_and_the_members(hosts):
    rules = psql(leader(), "SELECT database[1] || ' ' || user_name[1] || ' ' || address FROM pg_hba_file_rules "
                           "WHERE type = 'host' AND address NOT IN ('127.0.0.1', '::1') ORDER BY 1")
    expected = sorted([f"catalog catalog {HOSTS[h]}" for h in TIERS["catalog"]]
                      + [f"replication replicator {HOSTS[h]}" for h in DB]
                      + [f"postgres postgres {HOSTS[h]}" for h in DB])
    assert rules.splitlines() == expected


def test_roles_and_database_exist(hosts):
    lead = leader()
    assert psql(lead, "SELECT rolname FROM pg_roles WHERE rolname IN ('catalog', 'replicator') ORDER BY 1") \
        == "catalog\nreplicator"
    assert psql(lead, "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'catalog'") \
        == "catalog"


def test_replicas_stream_from_the_leader_through_slots(hosts):
    lead, others = leader(), replicas()
    streaming = psql(lead, "SELECT application_name || ' ' || state FROM pg_stat_replication ORDER BY 1")
    assert streaming.splitlines() == [f"{r} streaming" for r in sorted(others)]
    slots = psql(lead, "SELECT slot_name || ' ' || active::text FROM pg_replication_slots ORDER BY 1")
    assert slots.splitlines() == [f"{r.replace('-', '_')} true" for r in sorted(others)]
    for r in others:
        assert psql(r, "SELECT pg_is_in_recovery()") == "t"


def test_row_written_on_the_leader_appears_on_every_replica_within_a_second(hosts):
    lead = leader()
    psql(lead, "CREATE TABLE IF NOT EXISTS roadie_replication_probe"
               " (token text PRIMARY KEY, at timestamptz DEFAULT now())")
    token = uuid.uuid4().hex
    psql(lead, f"INSERT INTO roadie_replication_probe (token) VALUES ('{token}')")
    written = time.monotonic()
    pending = set(replicas())
    while pending and time.monotonic() - written < 1.0:
        pending = {r for r in pending
                   if psql(r, f"SELECT count(*) FROM roadie_replication_probe WHERE token = '{token}'") != "1"}
    assert not pending, f"the row did not reach {sorted(pending)} within 1 s"


def test_replicas_refuse_writes(hosts):
    for r in replicas():
        proc = psql(r, "CREATE TABLE nope (x int)", check=False)
        assert proc.returncode != 0 and "read-only transaction" in proc.stderr


@pytest.mark.parametrize(("source", "port", "expected"), [
    ("catalog-1", 2379, "refused"), ("catalog-1", 2380, "refused"), ("catalog-1", 8008, "refused"),
    ("lb-1", 5432, "refused"),
    ("db-2", 2379, "open"), ("db-2", 2380, "open"), ("db-2", 8008, "open"), ("catalog-1", 5432, "open"),
])
def test_firewall_keeps_etcd_and_patroni_among_database_hosts(hosts, source, port, expected):
    # The firewall answers a refused port with a TCP reset (roles/common nftables.conf).
    assert connect_from(source, HOSTS["db-1"], port) == expected


CONFDIR = "/etc/postgresql/15/main"


def postmaster_pid(name: str) -> str:
    return ssh(name, "head -1 /var/lib/postgresql/15/main/postmaster.pid").stdout.strip()


def _drift_and_converge(name: str, files: list[str]) -> dict:
    ssh(name, " && ".join(f"echo '# roadie drift' >> {f}" for f in files))
    doc = converge("--tags", "database_configure", "--limit", name)
    assert doc["returncode"] == 0 and doc["ok"], doc["stdout"] + doc["stderr"]
    assert doc["hosts"][name]["changed"] >= len(files)
    for f in files:
        assert ssh(name, f"grep -c 'roadie drift' {f}", check=False).stdout.strip() == "0", f
    return doc


def test_pg_hba_and_ident_drift_reloads_without_restart(hosts):
    name = replicas()[0]
    before, loaded = postmaster_pid(name), psql(name, "SELECT pg_conf_load_time()")
    _drift_and_converge(name, [f"{CONFDIR}/pg_hba.conf", f"{CONFDIR}/pg_ident.conf"])
    assert postmaster_pid(name) == before, "a pg_hba/pg_ident change restarted PostgreSQL"
    assert psql(name, "SELECT pg_conf_load_time()") != loaded, "the configuration was not reloaded"


def test_patroni_config_drift_is_restored_and_reloaded_without_restart(hosts):
    name = replicas()[0]
    before = postmaster_pid(name)
    mark = ssh(name, "journalctl -u patroni -o cat --no-pager | wc -l").stdout.strip()
    _drift_and_converge(name, ["/etc/patroni/config.yml"])
    assert postmaster_pid(name) == before
    log = ssh(name, f"journalctl -u patroni -o cat --no-pager | tail -n +{int(mark) + 1}").stdout
    assert "Reloading" in log or "reload" in log.lower(), log[-2000:]
    assert psql(name, "SELECT pg_is_in_recovery()") == "t"


def test_template_paths_do_not_bake_the_version():
    role = ROOT / "roles" / "database"
    baked = [str(p.relative_to(role)) for p in (role / "templates").rglob("*") if re.search(r"/1\d(/|$)", str(p))]
    assert baked == []
    for tasks in (role / "tasks").glob("*.yml"):
        assert not re.search(r"postgresql/1\d", tasks.read_text()), f"{tasks.name} hard-codes a version path"


def _inventory_with(tmp_path, host: str, overrides: dict) -> dict:
    """A copy of the local inventory (symlinks resolved) with host_vars for HOST: env for run_roadie."""
    shutil.copytree(paths.INVENTORIES / "local", tmp_path / "local", symlinks=False)
    (tmp_path / "local" / "host_vars").mkdir()
    # The inventory finds the fleet's keys relative to itself: point the copy at them.
    overrides = {"roadie_state_dir": str(STATE), **overrides}
    (tmp_path / "local" / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(overrides))
    return {"ROADIE_INVENTORIES": str(tmp_path)}


@pytest.mark.parametrize(("target", "overrides", "bad"), [
    ("/etc/patroni/config.yml", {"database_patroni_rest_port": 99999}, ":99999"),
    (f"{CONFDIR}/pg_hba.conf", {"database_user": "catalog bogus"}, "bogus"),
])
def test_bad_configuration_never_reaches_the_cluster(hosts, tmp_path, target, overrides, bad):
    name = replicas()[0]
    digest, pid = ssh(name, f"sha256sum {target}").stdout.split()[0], postmaster_pid(name)
    try:
        env = _inventory_with(tmp_path, name, overrides)
        doc = converge("--tags", "database_configure", "--limit", name, env=env)
        assert doc["returncode"] != 0 and doc["hosts"][name]["failed"] == 1, doc["stdout"] + doc["stderr"]
        assert ssh(name, f"sha256sum {target}").stdout.split()[0] == digest, f"a bad {target} was installed"
        assert ssh(name, f"grep -c -- '{bad}' {target}", check=False).stdout.strip() == "0"
        assert postmaster_pid(name) == pid
        assert psql(name, "SELECT pg_is_in_recovery()") == "t"
    finally:
        restored = converge("--tags", "database", "--limit", name)
        assert restored["returncode"] == 0, restored["stdout"] + restored["stderr"]


@pytest.mark.parametrize(("kind", "content", "ok"), [
    ("ident", "roadie_admin postgres postgres\n", True),
    ("ident", "roadie_admin postgres\n", False),
    ("hba", "local all all peer\n", True),
    ("hba", "host all all 198.18.0.999/32 scram-sha-256\n", False),
])
def test_config_checker(hosts, kind, content, ok):
    proc = ssh(DB[1], f"f=$(mktemp) && printf '{content}' > $f && /usr/local/sbin/roadie-pg-check {kind} $f; "
                      f"rc=$?; rm -f $f; exit $rc", check=False)
    assert (proc.returncode == 0) == ok, proc.stderr


@pytest.mark.parametrize(("edit", "ok"), [
    ("cat", True),  # the running member's own file: its ports are in use, by Patroni itself
    ("sed s/:8008/:99999/", False),
    ("sed s/^scope:.*//", False),
])
def test_patroni_config_checker(hosts, edit, ok):
    proc = ssh(DB[1], f"f=$(mktemp) && {edit} /etc/patroni/config.yml > $f && "
                      f"/usr/local/sbin/roadie-pg-check patroni $f; rc=$?; rm -f $f; exit $rc", check=False)
    assert (proc.returncode == 0) == ok, proc.stderr


# Patroni's REST API: unsafe endpoints ask for the role's credentials; GETs stay open.

def _rest(source: str, method: str, path: str, target: str = "db-1", auth: str | None = None) -> int:
    """The status a POST/GET from a fleet host to TARGET's Patroni REST API gets (no credentials unless AUTH)."""
    headers = {"Authorization": f"Basic {auth}"} if auth else {}
    code = ("import urllib.request as u, urllib.error as e\n"
            f"r = u.Request('http://{HOSTS[target]}:8008{path}', data={b'{}' if method != 'GET' else None!r}, "
            f"method='{method}', headers={headers!r})\n"
            "try:\n    print(u.urlopen(r, timeout=10).status)\nexcept e.HTTPError as h:\n    print(h.code)\n")
    return int(ssh(source, f"python3 -c {shlex.quote(code)}").stdout.strip())


@pytest.mark.parametrize("method, path, expected", [
    ("POST", "/reload", 401),   # was 202 before restapi.authentication
    ("POST", "/switchover", 401),  # an empty body: harmless (400) even if it were let through
    ("PATCH", "/config", 401),
    ("GET", "/health", 200),    # GETs need no credentials (the role's and the balancer's checks)
    ("GET", "/cluster", 200),
])
def test_patroni_rest_api_refuses_unsafe_requests_without_credentials(hosts, method, path, expected):
    assert _rest("db-2", method, path) == expected


def test_patroni_rest_api_accepts_the_roles_credentials_and_patronictl_sends_them(hosts):
    from roadie.converge import secrets as converge_secrets

    password = converge_secrets.read_local(STATE)["vault_patroni_rest_password"]
    auth = base64.b64encode(f"roadie:{password}".encode()).decode()
    assert _rest("db-2", "POST", "/reload", auth=auth) in (200, 202)
    assert _rest("db-2", "POST", "/reload", auth=base64.b64encode(b"roadie:wrong").decode()) == 401
    # patronictl reads restapi.authentication from the same file (POST /reload to every member).
    name = replicas()[0]
    proc = ssh(name, f"patronictl -c /etc/patroni/config.yml reload roadie-catalog {name} --force", check=False)
    assert proc.returncode == 0 and "401" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
