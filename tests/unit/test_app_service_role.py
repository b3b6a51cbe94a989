"""The app_service role (and streaming_edge, nginx in front of streaming) render exactly what the
catalog and streaming roles they replace rendered, for each service; checked without the fleet.

Ansible itself renders every template of the two roles (a probe play, `connection: local`, the
play variable app_service_name as playbooks/TIER.yml sets it, the roles' defaults and argument
specs, an inventory and the playbooks' group_vars; the roles' own tasks are skipped by tag), and
each file is compared with the whole text the old roles wrote, byte for byte (same paths, unit
names, environment files and nginx configuration, so a converge after the change finds nothing to
change and restarts nothing). The tables below are by service, then by environment:

- local: the committed local inventory (moto's endpoint and static keys);
- aws: staging's group_vars on stand-in hosts, plus inventory group_vars that override role
  defaults per tier (the way an environment tunes a service: they must still win).

Also: the tags `roadie converge --tags` and the docs use select the same tasks as before, and the
argument specs describe each option in its own words.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests import roleprobe

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("app_service", "streaming_edge")
PROBE_TAG = "app_service_probe"
PASSWORD = "probe&pass word"  # URL-encoded in CATALOG_DATABASE_URL

# --- What each service's hosts get: the old roles' output, whole ---------------------------------------
# @TOKENS@ differ by environment and host (ENVIRONMENTS below).

CATALOG_ENV = """\
# Ansible managed
CATALOG_BIND=@ADDRESS@:8080
# Quoted: the URL's & must survive both systemd's EnvironmentFile and `sh -c '. file'`.
CATALOG_DATABASE_URL="postgresql://catalog:probe%26pass%20word@@DB@/catalog?@OPTIONS@"
CATALOG_WORKERS=2
CATALOG_THREADS=8
CATALOG_GRACEFUL_TIMEOUT=30
@CATALOG_EXTRA@"""

UNIT = """\
# Ansible managed
[Unit]
Description=@DESCRIPTION@
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=@NAME@
Group=@NAME@
EnvironmentFile=/srv/@NAME@/shared/@NAME@.env
WorkingDirectory=/srv/@NAME@
ExecStart=/srv/@NAME@/current/bin/serve
KillSignal=SIGTERM
TimeoutStopSec=45
Restart=on-failure
RestartSec=2
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ReadOnlyPaths=/srv/@NAME@
@WRITABLE@
[Install]
WantedBy=multi-user.target
"""

STREAMING_ENV = """\
# Ansible managed
STREAMING_BIND=127.0.0.1:8081
STREAMING_MEDIA_BUCKET=@BUCKET@
STREAMING_CACHE_DIR=/srv/streaming/shared/cache
STREAMING_CACHE_MAX_BYTES=1073741824
STREAMING_WORKERS=@STREAMING_WORKERS@
STREAMING_THREADS=16
STREAMING_GRACEFUL_TIMEOUT=30
AWS_DEFAULT_REGION=us-east-1
@AWS@@STREAMING_EXTRA@"""

NGINX = """\
# Ansible managed
user www-data;
worker_processes auto;
pid /run/nginx.pid;
worker_rlimit_nofile 8192;
error_log /var/log/nginx/error.log warn;
include /etc/nginx/modules-enabled/*.conf;

events {
  worker_connections 4096;
}

http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  server_tokens off;
  access_log /var/log/nginx/access.log;

  # Media slices, keyed by track and byte range; bounded by max_size (LRU eviction).
  proxy_cache_path /var/cache/nginx/streaming levels=1:2 keys_zone=media:32m
                   max_size=2g inactive=7d
                   use_temp_path=off;

  upstream streaming_app {
    server 127.0.0.1:8081;
    keepalive 32;
  }

  server {
    listen @ADDRESS@:80 default_server;
    server_name _;

    proxy_http_version 1.1;

    # Audio: fetched from the app in fixed slices, cached, served with byte ranges.
    location /stream/ {
      slice 1m;
      proxy_cache media;
      proxy_cache_key $uri$slice_range;
      proxy_set_header Range $slice_range;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_cache_valid 200 206 7d;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status always;
      proxy_pass http://streaming_app;
    }

    # Health and version come straight from the app, never from the cache.
    location / {
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_pass http://streaming_app;
    }
  }
}
"""

# service -> {file on the host (as the probe names it): (role, template, expected text)}
SERVICES = {
    "catalog": {
        "catalog.env": ("app_service", "srv/SERVICE/shared/SERVICE.env.j2", CATALOG_ENV),
        "catalog.service": ("app_service", "etc/systemd/system/SERVICE.service.j2", UNIT),
    },
    "streaming": {
        "streaming.env": ("app_service", "srv/SERVICE/shared/SERVICE.env.j2", STREAMING_ENV),
        "streaming.service": ("app_service", "etc/systemd/system/SERVICE.service.j2", UNIT),
        "nginx.conf": ("streaming_edge", "etc/nginx/nginx.conf.j2", NGINX),
    },
}
# The roles each service's play applies (playbooks/TIER.yml).
PLAY_ROLES = {"catalog": ["app_service"], "streaming": ["app_service", "streaming_edge"]}
PER_SERVICE = {
    "catalog": {"@NAME@": "catalog", "@DESCRIPTION@": "roadie catalog API", "@WRITABLE@": ""},
    "streaming": {"@NAME@": "streaming", "@DESCRIPTION@": "roadie streaming service",
                  "@WRITABLE@": "ReadWritePaths=/srv/streaming/shared/cache\n"},
}

LOCAL_DB = "198.18.0.15:5432,198.18.0.16:5432,198.18.0.17:5432"
OPTIONS = "target_session_attrs=read-write&tcp_user_timeout=5000&keepalives_idle=5&keepalives_interval=2" \
          "&keepalives_count=2"
AWS_NET = "10.20"
ENVIRONMENTS = {
    "local": {
        "hosts": {"catalog-1": "198.18.0.11", "catalog-2": "198.18.0.12", "streaming-1": "198.18.0.13",
                  "streaming-2": "198.18.0.14"},
        "tokens": {"@DB@": LOCAL_DB, "@OPTIONS@": OPTIONS, "@BUCKET@": "roadie-local-media",
                   "@AWS@": "AWS_ENDPOINT_URL=http://198.18.0.1:4566\nAWS_ACCESS_KEY_ID=roadie-local\n"
                            "AWS_SECRET_ACCESS_KEY=roadie-local\n",
                   "@STREAMING_WORKERS@": "2", "@CATALOG_EXTRA@": "", "@STREAMING_EXTRA@": ""},
    },
    # No endpoint, no static keys (the instance profile); tier settings an environment overrides.
    "aws": {
        "hosts": {"catalog-i-1": f"{AWS_NET}.64.10", "streaming-i-1": f"{AWS_NET}.80.10"},
        "group_vars": {"catalog": {"app_service_database_options": "target_session_attrs=read-write",
                                   "app_service_extra_env": {"CATALOG_TRACE": "1", "EMPTY": ""}},
                       "streaming": {"app_service_workers": 4,
                                     "app_service_extra_env": {"STREAMING_TRACE": "1"}}},
        "tokens": {"@DB@": f"{AWS_NET}.128.10:5432,{AWS_NET}.144.10:5432",
                   "@OPTIONS@": "target_session_attrs=read-write",
                   "@BUCKET@": "roadie-staging-media", "@AWS@": "", "@STREAMING_WORKERS@": "4",
                   "@CATALOG_EXTRA@": "CATALOG_TRACE=1\nEMPTY=\n", "@STREAMING_EXTRA@": "STREAMING_TRACE=1\n"},
    },
}


def expected(env: str, service: str, host: str, text: str) -> str:
    tokens = {**ENVIRONMENTS[env]["tokens"], **PER_SERVICE[service], "@ADDRESS@": ENVIRONMENTS[env]["hosts"][host]}
    for token, value in tokens.items():
        text = text.replace(token, value)
    assert not re.search(r"@[A-Z_]+@", text), text
    return text


# --- The probe: Ansible renders the templates on this machine ------------------------------------------

def _plays() -> list[dict]:
    plays = []
    for service, files in SERVICES.items():
        renders = [{"name": f"Render {name}", "tags": [PROBE_TAG], "ansible.builtin.template": {
            "src": f"{{{{ probe_roles }}}}/{role}/templates/{template}",
            "dest": f"{{{{ probe_out }}}}/{{{{ inventory_hostname }}}}/{name}"}}
            for name, (role, template, _) in files.items()]
        # As playbooks/TIER.yml: app_service_name is a play variable; the roles' own tasks are skipped (--tags).
        plays.append({"name": f"Probe {service}", "hosts": service, "connection": "local", "gather_facts": False,
                      "vars": {"app_service_name": service}, "roles": PLAY_ROLES[service],
                      "tasks": [{"name": "Output directory", "tags": [PROBE_TAG], "ansible.builtin.file": {
                          "path": "{{ probe_out }}/{{ inventory_hostname }}", "state": "directory"}}, *renders]})
    return plays


def _inventory(work: Path, env: str) -> Path:
    """local as committed; aws: staging's inventory on static stand-in hosts, with tier overrides."""
    if env == "local":
        return ROOT / "inventories" / "local"
    inv = work / "inventory"
    shutil.copytree(ROOT / "inventories" / "staging", inv, symlinks=False)
    (inv / "aws_ec2.yml").unlink()
    hosts = ENVIRONMENTS[env]["hosts"]
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "catalog": {"hosts": {h: {"ansible_host": a} for h, a in hosts.items() if h.startswith("catalog")}},
        "streaming": {"hosts": {h: {"ansible_host": a} for h, a in hosts.items() if h.startswith("streaming")}},
        "database": {"hosts": {"db-1": {"ansible_host": f"{AWS_NET}.128.10"},
                               "db-2": {"ansible_host": f"{AWS_NET}.144.10"}}}}}}))
    for group, values in ENVIRONMENTS[env].get("group_vars", {}).items():
        (inv / "group_vars" / f"{group}.yml").write_text(yaml.safe_dump(values))
    return inv


def _ansible_env(work: Path) -> tuple[Path, dict]:
    ansible = Path(sys.executable).with_name("ansible-playbook")
    return ansible, {"PATH": f"{ansible.parent}:/usr/bin:/bin", "HOME": str(work), "ANSIBLE_NOCOLOR": "1",
                     "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
                     "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_CACHE_PLUGIN": "memory"}


def render(work: Path, env: str) -> Path:
    play_dir, out = work / "probe", work / "rendered"
    play_dir.mkdir(parents=True)
    (play_dir / "group_vars").symlink_to(ROOT / "playbooks" / "group_vars")
    (play_dir / "probe.yml").write_text(yaml.safe_dump(_plays(), sort_keys=False))
    extra = {"probe_roles": str(ROOT / "roles"), "probe_out": str(out), "ansible_connection": "local",
             "ansible_python_interpreter": sys.executable, "vault_catalog_db_password": PASSWORD}
    ansible, penv = _ansible_env(work)
    cmd = [str(ansible), "-i", str(_inventory(work, env)), str(play_dir / "probe.yml"), "--tags", PROBE_TAG,
           "-e", json.dumps(extra)]
    proc = roleprobe.run(cmd, penv)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    return {env: render(tmp_path_factory.mktemp(f"app-service-{env}"), env) for env in ENVIRONMENTS}


CASES = [(env, service, host, name)
         for env, spec in ENVIRONMENTS.items()
         for service in SERVICES
         for host in spec["hosts"] if host.startswith(service)
         for name in SERVICES[service]]


@pytest.mark.parametrize(("env", "service", "host", "name"), CASES, ids=["-".join(c) for c in CASES])
def test_each_file_is_what_the_old_role_wrote(rendered, env, service, host, name):
    got = (rendered[env] / host / name).read_text()
    assert got == expected(env, service, host, SERVICES[service][name][2])


def test_each_host_gets_its_services_files_only(rendered):
    for env, spec in ENVIRONMENTS.items():
        for host in spec["hosts"]:
            service = next(s for s in SERVICES if host.startswith(s))
            assert sorted(p.name for p in (rendered[env] / host).iterdir()) == sorted(SERVICES[service]), host


def test_every_template_of_the_roles_is_rendered_for_each_service_that_uses_it():
    """A template added to a role without a row here fails: each is compared for each service."""
    found = {(role, str(p.relative_to(ROOT / "roles" / role / "templates")))
             for role in ROLES for p in (ROOT / "roles" / role / "templates").rglob("*.j2")}
    for service, files in SERVICES.items():
        used = {(role, template) for role, template, _ in files.values()}
        assert used == {t for t in found if t[0] in PLAY_ROLES[service]}, service


# --- Tags: the ones `roadie converge --tags`, the tests and the docs use select what they did ----------

INSTALL = ["app_service : Create the service user", "app_service : Create the release layout",
           "app_service : Create the directories the service writes"]
CONFIGURE = ["app_service : Write the service environment", "app_service : Install the systemd unit"]
RUN = ["app_service : Look for a deployed release",
       "app_service : Enable the service (and run it once a release is deployed)"]
EDGE_INSTALL = ["streaming_edge : Look for missing nginx packages", "streaming_edge : Install nginx",
                "streaming_edge : Create the media cache"]
EDGE_CONFIGURE = ["streaming_edge : Configure nginx"]
EDGE_RUN = ["streaming_edge : Enable and start nginx"]

TAGS = {
    "catalog_configure": {"catalog": CONFIGURE},
    "streaming_configure": {"streaming": CONFIGURE + EDGE_CONFIGURE},
    "streaming_run": {"streaming": RUN + EDGE_RUN},
    "catalog_install": {"catalog": INSTALL},
    "streaming_install": {"streaming": INSTALL + EDGE_INSTALL},
    "catalog": {"catalog": INSTALL + CONFIGURE + RUN},
    "streaming": {"streaming": INSTALL + CONFIGURE + RUN + EDGE_INSTALL + EDGE_CONFIGURE + EDGE_RUN},
    "app_service_configure": {"catalog": CONFIGURE, "streaming": CONFIGURE},
    "app_service_run": {"catalog": RUN, "streaming": RUN},
    "streaming_edge_configure": {"streaming": EDGE_CONFIGURE},
}


def _listed(work: Path, tags: str) -> dict[str, list[str]]:
    """Tier play -> the tasks `ansible-playbook --list-tasks --tags TAGS playbooks/site.yml` selects (no host asked)."""
    ansible, env = _ansible_env(work)
    cmd = [str(ansible), "-i", str(ROOT / "inventories" / "local"), str(ROOT / "playbooks" / "site.yml"),
           "--list-tasks", "--tags", tags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out: dict[str, list[str]] = {}
    for play, body in re.findall(r"^  play #\d+ \((\w+)\):.*?\n(.*?)(?=^  play #|\Z)", proc.stdout, re.M | re.S):
        tasks = [t.strip() for t in re.findall(r"^\s{6}(\S.*?)\s+TAGS:", body, re.M)
                 if "Validating arguments against arg spec" not in t]
        if tasks:
            out[play] = tasks
    return out


@pytest.mark.parametrize("tags", list(TAGS))
def test_tags_select_the_tasks_they_did(tmp_path, tags):
    assert _listed(tmp_path, tags) == TAGS[tags]


# --- The argument specs: every option, each in its own words ------------------------------------------

def _spec(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]


@pytest.mark.parametrize("role", ROLES)
def test_each_option_has_a_default_and_its_own_description(role):
    options = _spec(role)["options"]
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    required = {name for name, o in options.items() if o.get("required")}
    assert set(options) - required == set(defaults)
    descriptions = [o["description"] for o in options.values()]
    assert all(len(d) > 20 for d in descriptions)
    assert len(set(descriptions)) == len(descriptions), "options share a description"
    secret = [name for name in options if any(w in name for w in ("password", "secret", "token", "private_key"))]
    assert all(options[name].get("no_log") is True for name in secret), secret
