"""catalog and streaming roles: users, layout, units, environment, nginx, listening addresses."""

import pytest
import yaml

from tests.conftest import ROOT
from tests.fleet.roles_fixtures import HOSTS, TIERS, converge, http, listening, ssh, wait_for

pytestmark = pytest.mark.fleet


@pytest.mark.parametrize("name", TIERS["catalog"])
def test_catalog_host(hosts, roles_fleet, name):
    host = hosts[name]
    svc = host.service("catalog")
    assert svc.is_running and svc.is_enabled
    assert host.user("catalog").shell == "/usr/sbin/nologin"
    env = host.file("/srv/catalog/shared/catalog.env")
    assert (env.user, env.group, env.mode) == ("root", "catalog", 0o640)
    assert env.contains(f"^CATALOG_BIND={HOSTS[name]}:8080$")
    # Every database host, so libpq finds whichever Patroni made the primary.
    members = ",".join(f"{HOSTS[db]}:5432" for db in TIERS["database"]).replace(".", r"\.")
    assert env.contains(f"^CATALOG_DATABASE_URL=\"postgresql://catalog:.*@{members}/catalog"
                        "?target_session_attrs=read-write&")  # grep's basic regex: ? is literal
    assert host.file("/srv/catalog/current").linked_to == \
        f"/srv/catalog/releases/{roles_fleet['builds']['catalog']['version']}"
    unit = host.file("/etc/systemd/system/catalog.service")
    assert unit.contains("^ExecStart=/srv/catalog/current/bin/serve$") and unit.contains("^KillSignal=SIGTERM$")
    assert listening(host, 8080) == {HOSTS[name]}
    status, _, body = http(f"http://{HOSTS[name]}:8080/version")
    assert status == 200 and b'"catalog"' in body


@pytest.mark.parametrize("name", TIERS["streaming"])
def test_streaming_host(hosts, roles_fleet, name):
    host = hosts[name]
    for unit in ("streaming", "nginx"):
        svc = host.service(unit)
        assert svc.is_running and svc.is_enabled, unit
    env = host.file("/srv/streaming/shared/streaming.env")
    assert (env.user, env.group, env.mode) == ("root", "streaming", 0o640)
    assert env.contains("^STREAMING_MEDIA_BUCKET=roadie-local-media$")
    assert env.contains("^AWS_ENDPOINT_URL=http://198.18.0.1:4566$")
    assert env.contains("^STREAMING_CACHE_MAX_BYTES=1073741824$")
    cache = host.file("/srv/streaming/shared/cache")
    assert cache.is_directory and cache.user == "streaming"
    assert host.file("/etc/nginx/nginx.conf").contains("max_size=2g")
    assert host.run("nginx -t").rc == 0
    assert listening(host, 8081) == {"127.0.0.1"}
    assert listening(host, 80) == {HOSTS[name]}


@pytest.mark.parametrize("name", TIERS["streaming"])
def test_nginx_serves_byte_ranges_from_its_cache(roles_fleet, name):
    url = f"http://{HOSTS[name]}/stream/2"
    status, headers, body = http(url, {"Range": "bytes=0-99"})
    assert status == 206 and len(body) == 100
    assert headers["Content-Range"].startswith("bytes 0-99/")
    status, headers, again = http(url, {"Range": "bytes=0-99"})
    assert status == 206 and again == body
    assert headers.get("X-Cache-Status") == "HIT"
    status, _, _ = http(f"http://{HOSTS[name]}/healthz")
    assert status == 200


HEALTH = {"catalog": "http://{address}:8080/healthz", "streaming": "http://{address}/healthz"}


def _show(name: str, unit: str, prop: str) -> str:
    return ssh(name, f"systemctl show -p {prop} --value {unit}").stdout.strip()


@pytest.mark.parametrize(("service", "name"), [("catalog", "catalog-2"), ("streaming", "streaming-2")])
def test_tag_limited_converge_restarts_what_it_changed(roles_fleet, service, name):
    """--tags SERVICE_configure repairs a drifted env file and unit, reloads systemd and restarts the service."""
    before = _show(name, service, "MainPID")
    assert before not in ("", "0")
    env, unit = f"/srv/{service}/shared/{service}.env", f"/etc/systemd/system/{service}.service"
    ssh(name, f"echo ROADIE_DRIFT=1 >> {env} && echo '# drift' >> {unit}")
    try:
        doc = converge("--tags", f"{service}_configure", "--limit", name)
        assert doc["returncode"] == 0 and doc["ok"], doc["stdout"] + doc["stderr"]
        assert set(doc["hosts"]) == {name} and doc["hosts"][name]["changed"] >= 2
        assert ssh(name, f"grep -c ROADIE_DRIFT {env} {unit}", check=False).stdout.split() == [f"{env}:0",
                                                                                                 f"{unit}:0"]
        assert _show(name, service, "NeedDaemonReload") == "no"
        assert _show(name, service, "ActiveState") == "active"
        after = _show(name, service, "MainPID")
        assert after not in ("", "0", before), f"{service} on {name} was not restarted (MainPID {before} -> {after})"
    finally:
        wait_for(lambda: http(HEALTH[service].format(address=HOSTS[name]))[0] == 200, timeout=60,
                 what=f"{service} health on {name}")


SECRET_WORDS = ("password", "secret", "token", "private_key")


def test_secret_arguments_are_no_log():
    """Every role argument that holds a secret is declared no_log in its argument spec."""
    missing = []
    for spec in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        for entry, body in yaml.safe_load(spec.read_text())["argument_specs"].items():
            for name, option in body.get("options", {}).items():
                if any(word in name for word in SECRET_WORDS) and option.get("no_log") is not True:
                    missing.append(f"{spec.parent.parent.name}:{entry}:{name}")
    assert missing == []
