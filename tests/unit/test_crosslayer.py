"""The cross-layer test: the balancer, the hosts and the services agree about each service.

For every service of the model (inventories/stack.yml) three extractors ask each
layer what it really does, never what a YAML file seems to say:

- `pulumi_facts`: the Pulumi program run under mocks (tests/infra/mockrun.py): the
  ALB target group's port and health check, the security group ports the tier
  admits from the balancer, the auto scaling group's health settings;
- `ansible_facts`: Ansible itself renders the roles' templates (a probe play,
  `connection: local`, with the roles' defaults, the inventory and the playbooks'
  group_vars): the port gunicorn or nginx listens on, nginx's upstream and
  locations, HAProxy's servers and health check, the host firewall;
- `service_facts`: the real WSGI apps answer each health path that a balancer
  checks, once with their dependencies up and once with them down.

`disagreements` is a pure function of the three and returns one line per
disagreement; the tests below plant each defect review found (and a few more)
in a temp copy of a layer's input and assert that it is reported.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from roadie import model
from tests import roleprobe

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "tests" / "infra", ROOT / "services" / "catalog", ROOT / "services" / "streaming"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from infra_testlib import STACKS, run_mocked  # noqa: E402

STACK_FILE = model.DEFAULT_PATH
LOCAL_INVENTORY = ROOT / "inventories" / "local"

# The least time a fresh app host needs before it can answer its health path on
# AWS: boot, `roadie converge` (apt installs of nginx/haproxy took 40 s cold
# through a cache here; a whole-fleet converge about 70 s), the release download
# and first deploy, the catalog's migrations. An ASG that acts on ELB health
# checks must give at least this much grace, plus the time the target group
# needs to call the host healthy.
MIN_BOOTSTRAP_SECONDS = 600


# --- The facts each layer gives -------------------------------------------------------------------------

@dataclass
class Balancer:
    """The AWS balancer and ASG for one service, from the Pulumi program."""

    port: int  # target group port: where the ALB sends traffic
    check_path: str
    check_port: int  # the port the health check probes (traffic-port resolved)
    matcher: str
    interval: int
    healthy_threshold: int
    admitted_ports: set[int]  # ports the tier's security group admits from the balancer's
    asg_health_type: str
    asg_grace: int


@dataclass
class Hosts:
    """What Ansible writes on one service's hosts (and on the local balancer), per host."""

    listen: dict[str, int]  # host -> the port the balancer reaches (gunicorn or nginx)
    firewall: dict[str, set[int]]  # host -> ports its firewall admits from the balancer hosts
    haproxy_servers: dict[str, int]  # host -> port HAProxy sends to
    haproxy_check: str | None
    # Behind nginx (streaming): the app's bind port, nginx's upstream port and its locations.
    app_bind: dict[str, int] = field(default_factory=dict)
    upstream: dict[str, int] = field(default_factory=dict)
    locations: dict[str, dict[str, dict]] = field(default_factory=dict)  # host -> prefix -> {app, cached}


@dataclass
class Answers:
    """Status codes one service's real WSGI app gives for a path: dependencies up, then down."""

    healthy: int
    unhealthy: int


# --- The comparison: pure -------------------------------------------------------------------------------

def _location(locations: dict[str, dict], path: str) -> tuple[str, dict] | None:
    """nginx's choice for a path among prefix locations: the longest matching prefix."""
    found = [p for p in locations if path.startswith(p)]
    return (max(found, key=len), locations[max(found, key=len)]) if found else None


def _answers(where: str, svc: str, path: str, answers: dict[str, Answers], matcher: str) -> list[str]:
    a = answers.get(path)
    if a is None:
        return [f"{svc}: {where} checks {path}, which the service was never asked"]
    if a.healthy == 404:
        return [f"{svc}: {where} checks {path}, a route the service does not serve (404)"]
    out = []
    if str(a.healthy) != matcher:
        out.append(f"{svc}: {where} expects {matcher} from {path}, a healthy service answers {a.healthy}")
    if a.unhealthy == a.healthy:
        out.append(f"{svc}: {where} checks {path}, which answers {a.healthy} even when the service cannot serve: "
                   "not a health check")
    return out


def disagreements(services: list[str], aws: dict[str, Balancer], hosts: dict[str, Hosts],
                  answers: dict[str, dict[str, Answers]], bootstrap: int = MIN_BOOTSTRAP_SECONDS) -> list[str]:
    """Every way the layers disagree about the services, one line each; [] when they agree."""
    out: list[str] = []
    for svc in services:
        b, h, a = aws[svc], hosts[svc], answers[svc]
        # Ports: the ALB's traffic and checks, the security group, HAProxy, the host.
        if b.check_port != b.port:
            out.append(f"{svc}: the ALB health check probes port {b.check_port}, traffic goes to {b.port}")
        if b.port not in b.admitted_ports:
            out.append(f"{svc}: the ALB sends to port {b.port}, the tier's security group admits "
                       f"{sorted(b.admitted_ports)} from it")
        for host, port in sorted(h.listen.items()):
            if port != b.port:
                out.append(f"{svc}: the ALB target group sends to port {b.port}, the role makes {host} listen "
                           f"on {port}")
            if h.haproxy_servers.get(host) != port:
                out.append(f"{svc}: HAProxy sends to {host}:{h.haproxy_servers.get(host)}, the role makes it "
                           f"listen on {port}")
            if port not in h.firewall.get(host, set()):
                out.append(f"{svc}: {host}'s firewall does not admit port {port} from the balancer "
                           f"(admits {sorted(h.firewall.get(host, set()))})")
        if set(h.haproxy_servers) != set(h.listen):
            out.append(f"{svc}: HAProxy's servers {sorted(h.haproxy_servers)} are not the service's hosts "
                       f"{sorted(h.listen)}")
        # Behind nginx: the upstream is the app, and the health path reaches the app uncached.
        for host, port in sorted(h.upstream.items()):
            if h.app_bind.get(host) != port:
                out.append(f"{svc}: nginx on {host} proxies to port {port}, the app binds "
                           f"{h.app_bind.get(host)}")
        # Health paths: each balancer's check is a route that answers its matcher only when healthy.
        checks = [("the ALB target group", b.check_path, b.matcher)]
        checks += [("HAProxy", h.haproxy_check, "200")] if h.haproxy_check else []
        for where, path, matcher in checks:
            out += _answers(where, svc, path, a, matcher)
            for host, locations in sorted(h.locations.items()):
                loc = _location(locations, path)
                if loc is None or not loc[1]["app"]:
                    out.append(f"{svc}: nginx on {host} does not pass {path} ({where}'s check) to the app")
                elif loc[1]["cached"]:
                    out.append(f"{svc}: nginx on {host} answers {path} ({where}'s check) from its cache "
                               f"(location {loc[0]})")
        # The ASG: a healthy instance must live.
        if b.asg_health_type == "ELB":
            needed = bootstrap + b.healthy_threshold * b.interval
            if b.asg_grace < needed:
                out.append(f"{svc}: the ASG replaces instances on ELB health after a {b.asg_grace} s grace "
                           f"period; bootstrap ({bootstrap} s) + {b.healthy_threshold} checks x {b.interval} s "
                           f"need {needed} s, so new hosts are killed before they are configured")
        elif b.asg_health_type != "EC2":
            out.append(f"{svc}: unknown ASG health check type {b.asg_health_type!r}")
    return out


# --- Extractor 1: the Pulumi program under mocks --------------------------------------------------------

def _pulumi_resources(stack: str, *overrides: str, stack_file: Path | None = None):
    """The program's custom resources under mocks, and `of(short type)` to pick them."""
    env = {"ROADIE_STACK_FILE": str(stack_file)} if stack_file else None
    proc = run_mocked(stack, *overrides, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = [r for r in json.loads(proc.stdout)["resources"] if r["custom"]]

    def of(short: str) -> list[dict]:
        return [r for r in res if r["type"].rsplit(":", 1)[1] == short]

    return res, of


def pulumi_facts(stack: str = "dev", *overrides: str, stack_file: Path | None = None) -> dict[str, Balancer]:
    _, of = _pulumi_resources(stack, *overrides, stack_file=stack_file)

    role = {g["id"]: g["inputs"]["tags"]["roadie:role"] for g in of("SecurityGroup")}
    admitted: dict[str, set[int]] = {}
    for r in of("SecurityGroupIngressRule"):
        i = r["inputs"]
        if role.get(i.get("referencedSecurityGroupId")) == "loadbalancer":
            admitted.setdefault(role[i["securityGroupId"]], set()).update(range(int(i["fromPort"]),
                                                                                int(i["toPort"]) + 1))
    out = {}
    for tg in of("TargetGroup"):
        svc, i = tg["inputs"]["tags"]["roadie:role"], tg["inputs"]
        hc = i["healthCheck"]
        asg = next(g["inputs"] for g in of("Group") if g["inputs"]["targetGroupArns"] == [tg["state"]["arn"]])
        port = int(i["port"])
        out[svc] = Balancer(
            port=port, check_path=hc["path"], check_port=port if hc["port"] == "traffic-port" else int(hc["port"]),
            matcher=str(hc["matcher"]), interval=int(hc["interval"]), healthy_threshold=int(hc["healthyThreshold"]),
            admitted_ports=admitted.get(svc, set()), asg_health_type=asg.get("healthCheckType", "EC2"),
            asg_grace=int(asg.get("healthCheckGracePeriod", 300)))
    return out


# --- Extractor 2: Ansible renders the roles' templates --------------------------------------------------

PROBE_TAG = "crosslayer_probe"


def _render(role: str, template: str, name: str) -> dict:
    return {"name": f"Render {name}", "ansible.builtin.template": {
        "src": f"{{{{ probe_roles }}}}/{role}/templates/{template}",
        "dest": f"{{{{ probe_out }}}}/{{{{ inventory_hostname }}}}/{name}"}, "tags": [PROBE_TAG]}


def _play(hosts: str, role: str | list[str], tasks: list[dict], play_vars: dict | None = None) -> dict:
    # The roles' own tasks are skipped (--tags): only their defaults and argument checks apply.
    # play_vars as in playbooks/TIER.yml (app_service_name, which names the service of the model).
    roles = [role] if isinstance(role, str) else role
    return {"name": f"Probe {' '.join(roles)}", "hosts": hosts, "connection": "local", "gather_facts": False,
            "vars": play_vars or {}, "roles": roles, "tasks": [{"name": "Output directory", "ansible.builtin.file": {
                "path": "{{ probe_out }}/{{ inventory_hostname }}", "state": "directory"}, "tags": [PROBE_TAG]},
                *tasks]}


def _addresses(group: str) -> dict:
    return {"name": f"{group.capitalize()} addresses", "run_once": True, "tags": [PROBE_TAG],
            "ansible.builtin.copy": {
                "dest": f"{{{{ probe_out }}}}/{group}-addresses.json",
                "content": f"{{{{ groups['{group}'] | map('extract', hostvars, 'ansible_host') | list | to_json }}}}"}}


PROBE = [
    _play("catalog:streaming:loadbalancer:database", "common", [
        _render("common", "etc/nftables.conf.j2", "nftables.conf"),
        *(_addresses(g) for g in ("loadbalancer", "catalog", "database")),
    ]),
    _play("database", "database", [_render("database", "etc/patroni/config.yml.j2", "patroni.yml"),
                                   _render("database", "etc/default/etcd.j2", "etcd.env"),
                                   _render("database", "etc/roadie/barman.env.j2", "barman.env")]),
    _play("catalog", "app_service", [_render("app_service", "srv/SERVICE/shared/SERVICE.env.j2", "catalog.env")],
          {"app_service_name": "catalog"}),
    _play("streaming", ["app_service", "streaming_edge"],
          [_render("streaming_edge", "etc/nginx/nginx.conf.j2", "nginx.conf"),
           _render("app_service", "srv/SERVICE/shared/SERVICE.env.j2", "streaming.env")],
          {"app_service_name": "streaming"}),
    _play("loadbalancer", "loadbalancer", [_render("loadbalancer", "etc/haproxy/haproxy.cfg.j2", "haproxy.cfg")]),
]


def render_roles(work: Path, inventory: Path = LOCAL_INVENTORY) -> Path:
    """Run the probe play with Ansible; returns the directory of rendered files, one folder per host.

    The play sits next to a link to playbooks/group_vars, so the tier policy
    there (firewall rules) applies as it does to playbooks/site.yml.
    """
    play_dir, out = work / "probe", work / "rendered"
    play_dir.mkdir(parents=True)
    (play_dir / "group_vars").symlink_to(ROOT / "playbooks" / "group_vars")
    (play_dir / "probe.yml").write_text(yaml.safe_dump(PROBE, sort_keys=False))
    extra = {"probe_roles": str(ROOT / "roles"), "probe_out": str(out),
             "ansible_python_interpreter": sys.executable,
             # Secrets and keys the templates read but that no port or path depends on
             # (a fresh clone has no .roadie/local yet).
             "vault_catalog_db_password": "probe", "common_admin_users": [],
             "vault_replication_password": "probe", "vault_database_superuser_password": "probe",
             "vault_patroni_rest_password": "probe", "vault_loadbalancer_stats_password": "probe-stats-password",
             # Memory settings read the host's facts, which the probe does not gather.
             "database_memory_mb": 1024}
    ansible = Path(sys.executable).with_name("ansible-playbook")
    cmd = [str(ansible), "-i", str(inventory), str(play_dir / "probe.yml"), "--tags", PROBE_TAG,
           "-e", json.dumps(extra)]
    env = {"PATH": f"{ansible.parent}:/usr/bin:/bin", "HOME": str(work), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(work / "tmp")}
    proc = roleprobe.run(cmd, env, also=(" addresses",))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return out


def _port(text: str, pattern: str) -> int:
    m = re.search(pattern, text, re.M)
    assert m, f"no {pattern!r} in\n{text}"
    return int(m.group(1))


def parse_nginx(text: str) -> tuple[int, int, dict[str, dict]]:
    """(listen port, upstream port, {location prefix: {app: proxies to the app, cached}})."""
    listen = _port(text, r"^\s*listen\s+(?:\S*:)?(\d+)[\s;]")
    upstream_name = re.search(r"^\s*upstream\s+(\S+)\s*\{", text, re.M).group(1)
    upstream = _port(text, rf"upstream\s+{re.escape(upstream_name)}\s*\{{\s*server\s+\S+?:(\d+)\s*;")
    locations = {}
    for prefix, body in re.findall(r"^\s*location\s+(/\S*)\s*\{(.*?)^\s*\}", text, re.M | re.S):
        locations[prefix] = {"app": bool(re.search(rf"proxy_pass\s+http://{re.escape(upstream_name)}\s*;", body)),
                             "cached": bool(re.search(r"^\s*proxy_cache\s+(?!off)\S+\s*;", body, re.M))}
    return listen, upstream, locations


def parse_haproxy(text: str) -> dict[str, dict]:
    """backend -> {check: the httpchk path, servers: {name: port}}."""
    out = {}
    for name, body in re.findall(r"^backend\s+(\S+)\n(.*?)(?=^\S|\Z)", text, re.M | re.S):
        check = re.search(r"option\s+httpchk\s+(?:GET\s+)?(\S+)", body)
        out[name] = {"check": check.group(1) if check else None,
                     "servers": {s: int(p) for s, p in re.findall(r"^\s*server\s+(\S+)\s+\S+?:(\d+)", body, re.M)}}
    return out


def parse_firewall(text: str, sources: list[str]) -> set[int]:
    """Ports an nftables input chain accepts from any of `sources` (or from anywhere)."""
    ports = set()
    for saddr, port in re.findall(r"^\s*(?:ip saddr \{([^}]*)\}\s+)?tcp dport (\d+) accept", text, re.M):
        allowed = {s.strip() for s in saddr.split(",")} if saddr else None
        if allowed is None or any(src in allowed or f"{src}/32" in allowed for src in sources):
            ports.add(int(port))
    return ports


def ansible_facts(work: Path, inventory: Path = LOCAL_INVENTORY, services: dict | None = None) -> dict[str, Hosts]:
    services = services or model.load().services
    out = render_roles(work, inventory)
    lb_sources = json.loads((out / "loadbalancer-addresses.json").read_text())
    haproxy: dict[str, dict] = {}
    for cfg in out.glob("*/haproxy.cfg"):
        haproxy.update(parse_haproxy(cfg.read_text()))
    facts = {}
    for name, svc in services.items():
        hosts = sorted(p.parent.name for p in out.glob(f"*/{name}.env"))
        assert hosts, f"Ansible rendered no {name}.env: no hosts in group {svc.group}?"
        h = Hosts(listen={}, firewall={}, haproxy_servers=haproxy.get(svc.backend, {}).get("servers", {}),
                  haproxy_check=haproxy.get(svc.backend, {}).get("check"))
        for host in hosts:
            env = (out / host / f"{name}.env").read_text()
            bind = _port(env, rf"^{name.upper()}_BIND=\S*?:(\d+)$")
            nginx = out / host / "nginx.conf"
            if nginx.exists():  # behind nginx: the balancer reaches nginx, nginx the app
                h.listen[host], h.upstream[host], h.locations[host] = parse_nginx(nginx.read_text())
                h.app_bind[host] = bind
            else:
                h.listen[host] = bind
            h.firewall[host] = parse_firewall((out / host / "nftables.conf").read_text(), lb_sources)
        facts[name] = h
    return facts


# --- Extractor 3: the real services ---------------------------------------------------------------------

class _Row:
    def fetchone(self):
        return (1,)


class _Conn:
    """A database connection that answers (the catalog's ping is `SELECT 1`)."""

    closed = False

    def execute(self, sql, *args):
        return _Row()


class _Bucket:
    def __init__(self, up: bool):
        self.up = up

    def head_bucket(self, Bucket):  # noqa: N803 (boto3's spelling)
        if not self.up:
            raise ConnectionError("media bucket unreachable")
        return {}


def catalog_app(up: bool):
    from catalog import app
    from catalog.db import Database

    class Reachable(Database):
        def conn(self):
            return _Conn()

    # Down: a real connection attempt to a closed loopback port (refused at once).
    return app.Catalog(Reachable("postgresql://unused/catalog") if up else Database(
        "postgresql://catalog@127.0.0.1:1/catalog?connect_timeout=2"))


def streaming_app(up: bool, cache_dir: Path):
    from streaming import app
    from streaming.config import Config

    cfg = Config(bind="", media_bucket="media", cache_dir=str(cache_dir), cache_max_bytes=1 << 20,
                 workers=1, threads=1, graceful_timeout=1)
    return app.create_app(cfg, s3_client=_Bucket(up))


def call(wsgi_app, path: str) -> int:
    from werkzeug.test import Client

    return Client(wsgi_app).get(path).status_code


def service_facts(paths: dict[str, set[str]], work: Path) -> dict[str, dict[str, Answers]]:
    """For each service, how its real app answers each path: dependencies up, then down."""
    makers = {"catalog": catalog_app, "streaming": lambda up: streaming_app(up, work / "cache")}
    out = {}
    for svc, wanted in paths.items():
        # A fresh app per call: the streaming app caches its health verdict for a few seconds.
        out[svc] = {p: Answers(call(makers[svc](True), p), call(makers[svc](False), p)) for p in sorted(wanted)}
    return out


def checked_paths(aws: dict[str, Balancer], hosts: dict[str, Hosts]) -> dict[str, set[str]]:
    return {svc: {aws[svc].check_path, *([hosts[svc].haproxy_check] if hosts[svc].haproxy_check else [])}
            for svc in aws}


# --- The tests ------------------------------------------------------------------------------------------

SERVICES = sorted(model.load().services)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("crosslayer")


@pytest.fixture(scope="module")
def aws_dev() -> dict[str, Balancer]:
    return pulumi_facts("dev")


@pytest.fixture(scope="module")
def hosts_local(work) -> dict[str, Hosts]:
    return ansible_facts(work / "baseline")


def check(aws, hosts, work, answers=None) -> list[str]:
    answers = answers or service_facts(checked_paths(aws, hosts), work)
    return disagreements(SERVICES, aws, hosts, answers)


def test_the_model_has_the_services_every_layer_serves(aws_dev, hosts_local):
    assert SERVICES == sorted(aws_dev) == sorted(hosts_local) == ["catalog", "streaming"]


def test_the_extractors_see_what_each_layer_really_does(aws_dev, hosts_local, work):
    """Not a tautology: each extractor reports concrete facts read from the layer itself."""
    stack = model.load()
    for svc in SERVICES:
        s = stack.service(svc)
        assert (aws_dev[svc].port, aws_dev[svc].check_path, aws_dev[svc].matcher) == (s.port, s.health_path, "200")
        assert set(hosts_local[svc].listen.values()) == {s.port}
        assert hosts_local[svc].haproxy_check == s.health_path
    assert hosts_local["catalog"].listen == {"catalog-1": 8080, "catalog-2": 8080}
    assert hosts_local["streaming"].listen == {"streaming-1": 80, "streaming-2": 80}
    assert set(hosts_local["streaming"].app_bind.values()) == {stack.service("streaming").app_port}
    answers = service_facts({svc: {"/healthz", "/version", "/nope"} for svc in SERVICES}, work)
    for svc in SERVICES:
        assert answers[svc]["/healthz"] == Answers(200, 503)  # a real check: 503 when it cannot serve
        assert answers[svc]["/version"] == Answers(200, 200)
        assert answers[svc]["/nope"] == Answers(404, 404)


@pytest.mark.parametrize("stack", STACKS)
def test_the_layers_agree(stack, hosts_local, work):
    """The product as committed: every service, every stack, no disagreement."""
    assert check(pulumi_facts(stack), hosts_local, work) == []


# Each planted defect: (how to plant it, text each reported line must contain).
# Plants go into temp copies (a model file given to the Pulumi program only, an
# inventory copy given to Ansible only) or monkeypatch a service: the repository
# is never edited.

def _model_copy(work: Path, **changes) -> Path:
    """A copy of the service model with changes {"service.key": value} ("database.key" for roadie_database),
    for one layer only."""
    doc = yaml.safe_load(STACK_FILE.read_text())
    for dotted, value in changes.items():
        svc, key = dotted.split(".")
        (doc["roadie_database"] if svc == "database" else doc["roadie_services"][svc])[key] = value
    path = work / "planted-stack.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _inventory_copy(work: Path, group: str, overrides: dict, kind: str = "group_vars") -> Path:
    """A copy of the local inventory (links resolved) with group_vars for one group added (host_vars
    for one host: they override the playbooks' group_vars, such as the tier's firewall)."""
    inv = work / "inventory"
    shutil.copytree(LOCAL_INVENTORY, inv, symlinks=False)
    (inv / kind).mkdir(exist_ok=True)
    (inv / kind / f"{group}.yml").write_text(yaml.safe_dump(overrides))
    return inv


def _tier(stack: str, tier: str, **changes) -> str:
    doc = yaml.safe_load((ROOT / "infra" / f"Pulumi.{stack}.yaml").read_text())["config"][f"roadie:{tier}"]
    return f"roadie:{tier}={json.dumps({**doc, **changes})}"


PLANTED = {
    # Review's findings.
    "alb-checks-/health": (
        lambda w: {"aws": pulumi_facts("dev", stack_file=_model_copy(w, **{"catalog.health_path": "/health",
                                                                          "streaming.health_path": "/health"}))},
        ["catalog: the ALB target group checks /health, a route the service does not serve (404)",
         "streaming: the ALB target group checks /health, a route the service does not serve (404)"]),
    "alb-sends-streaming-to-8000": (
        lambda w: {"aws": pulumi_facts("dev", stack_file=_model_copy(w, **{"streaming.port": 8000}))},
        ["streaming: the ALB target group sends to port 8000, the role makes streaming-1 listen on 80",
         "streaming: the ALB target group sends to port 8000, the role makes streaming-2 listen on 80"]),
    "asg-elb-check-120s-grace": (
        lambda w: {"aws": pulumi_facts("dev", _tier("dev", "catalog", healthCheckGracePeriod=120))},
        ["catalog: the ASG replaces instances on ELB health after a 120 s grace period; bootstrap (600 s) + "
         "2 checks x 10 s need 620 s"]),
    "role-streaming_edge_http_port-override": (
        lambda w: {"hosts": ansible_facts(w, _inventory_copy(w, "streaming", {"streaming_edge_http_port": 8000}))},
        ["streaming: the ALB target group sends to port 80, the role makes streaming-1 listen on 8000",
         "streaming: HAProxy sends to streaming-1:80, the role makes it listen on 8000",
         "streaming: streaming-1's firewall does not admit port 8000 from the balancer"]),
    # More drifts of the same kind.
    "alb-checks-/version": (
        lambda w: {"aws": pulumi_facts("dev", stack_file=_model_copy(w, **{"catalog.health_path": "/version"}))},
        ["catalog: the ALB target group checks /version, which answers 200 even when the service cannot serve"]),
    "role-app_service_port-override-behind-nginx": (
        lambda w: {"hosts": ansible_facts(w, _inventory_copy(w, "streaming", {"app_service_port": 9000}))},
        ["streaming: nginx on streaming-1 proxies to port 8081, the app binds 9000",
         "streaming: nginx on streaming-2 proxies to port 8081, the app binds 9000"]),
    "role-app_service_port-override": (
        lambda w: {"hosts": ansible_facts(w, _inventory_copy(w, "catalog", {"app_service_port": 9090}))},
        ["catalog: the ALB target group sends to port 8080, the role makes catalog-1 listen on 9090",
         "catalog: catalog-2's firewall does not admit port 9090 from the balancer"]),
    "service-drops-/healthz": (
        "unserved",
        ["catalog: the ALB target group checks /healthz, a route the service does not serve (404)",
         "catalog: HAProxy checks /healthz, a route the service does not serve (404)"]),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_each_planted_drift_is_reported(name, aws_dev, hosts_local, work, tmp_path, monkeypatch):
    plant, expected = PLANTED[name]
    layers = {"aws": aws_dev, "hosts": hosts_local}
    if plant == "unserved":  # the catalog app without its /healthz route
        from catalog import app
        from werkzeug.routing import Map, Rule

        monkeypatch.setattr(app, "URLS", Map([Rule(r.rule, endpoint=r.endpoint, methods=r.methods)
                                              for r in app.URLS.iter_rules() if r.rule != "/healthz"]))
    else:
        layers.update(plant(tmp_path))
    found = check(layers["aws"], layers["hosts"], tmp_path)
    for text in expected:
        assert [line for line in found if line.startswith(text)], f"{text!r} not reported; got {found}"


# The comparison alone, on planted facts: each rule fires by itself and only then.

def _agreeing() -> tuple[dict, dict, dict]:
    aws = {svc: Balancer(port=p, check_path="/healthz", check_port=p, matcher="200", interval=10, healthy_threshold=2,
                         admitted_ports={p}, asg_health_type="ELB", asg_grace=900)
           for svc, p in (("catalog", 8080), ("streaming", 80))}
    hosts = {
        "catalog": Hosts(listen={"c1": 8080}, firewall={"c1": {8080}}, haproxy_servers={"c1": 8080},
                         haproxy_check="/healthz"),
        "streaming": Hosts(listen={"s1": 80}, firewall={"s1": {80}}, haproxy_servers={"s1": 80},
                           haproxy_check="/healthz", app_bind={"s1": 8081}, upstream={"s1": 8081},
                           locations={"s1": {"/": {"app": True, "cached": False},
                                             "/stream/": {"app": True, "cached": True}}}),
    }
    answers = {svc: {"/healthz": Answers(200, 503)} for svc in ("catalog", "streaming")}
    return aws, hosts, answers


def _set(obj, dotted: str, value):
    *parents, leaf = dotted.split(".")
    for p in parents:
        obj = obj[p] if isinstance(obj, dict) else getattr(obj, p)
    if isinstance(obj, dict):
        obj[leaf] = value
    else:
        setattr(obj, leaf, value)


PURE = [
    ("aws.streaming.check_port", 8000, "streaming: the ALB health check probes port 8000, traffic goes to 80"),
    ("aws.catalog.admitted_ports", {8000}, "catalog: the ALB sends to port 8080, the tier's security group admits"),
    ("aws.catalog.asg_grace", 300, "catalog: the ASG replaces instances on ELB health after a 300 s grace"),
    ("aws.catalog.asg_health_type", "ELBv2", "catalog: unknown ASG health check type 'ELBv2'"),
    ("aws.streaming.matcher", "200-299", "streaming: the ALB target group expects 200-299 from /healthz, a healthy"),
    ("hosts.catalog.haproxy_servers", {"c1": 8080, "c9": 8080}, "catalog: HAProxy's servers ['c1', 'c9']"),
    ("hosts.catalog.haproxy_check", "/health", "catalog: HAProxy checks /health, which the service was never asked"),
    ("hosts.streaming.locations.s1./", {"app": False, "cached": False},
     "streaming: nginx on s1 does not pass /healthz (the ALB target group's check) to the app"),
    ("hosts.streaming.locations.s1./", {"app": True, "cached": True},
     "streaming: nginx on s1 answers /healthz (the ALB target group's check) from its cache (location /)"),
    ("hosts.streaming.upstream.s1", 8000, "streaming: nginx on s1 proxies to port 8000, the app binds 8081"),
    ("answers.catalog./healthz", Answers(503, 503), "catalog: the ALB target group expects 200 from /healthz, a "
                                                    "healthy service answers 503"),
]


@pytest.mark.parametrize("dotted, value, expected", PURE, ids=[p[0] for p in PURE])
def test_the_comparison_reports_each_planted_fact(dotted, value, expected):
    aws, hosts, answers = _agreeing()
    assert disagreements(["catalog", "streaming"], aws, hosts, answers) == []
    layers = copy.deepcopy({"aws": aws, "hosts": hosts, "answers": answers})
    where, rest = dotted.split(".", 1)
    if where == "hosts" and rest.startswith("streaming.locations."):  # location keys are paths
        svc, _, host, prefix = rest.split(".", 3)
        layers["hosts"][svc].locations[host][prefix] = value
    elif where == "answers":
        svc, path = rest.split(".", 1)
        layers["answers"][svc][path] = value
    else:
        _set(layers[where], rest, value)
    found = disagreements(["catalog", "streaming"], layers["aws"], layers["hosts"], layers["answers"])
    assert [line for line in found if line.startswith(expected)], found


def test_ec2_health_checks_let_an_unconfigured_host_live():
    aws, hosts, answers = _agreeing()
    aws["catalog"].asg_health_type, aws["catalog"].asg_grace = "EC2", 0
    assert disagreements(["catalog", "streaming"], aws, hosts, answers) == []


# --- The database cluster: the model's roadie_database in every layer ----------------------------------
#
# The same three kinds of extractor, for the facts the database tier's layers share: what Ansible
# writes on the database hosts (Patroni's and etcd's configuration, barman's settings, the
# firewall), the security groups the Pulumi program makes, and the shell lines roadie's db
# commands run. `db_disagreements` compares each with the model, one line per disagreement.

# The model's fields each layer must use, as people call them.
DB_FACTS = {"port": "PostgreSQL port", "patroni_rest_port": "Patroni REST port", "etcd_client_port": "etcd client port",
            "etcd_peer_port": "etcd peer port", "patroni_scope": "Patroni scope", "backup_prefix": "backup prefix"}
# The ports the members use between themselves; only PostgreSQL's is for the catalog hosts too.
MEMBER_PORTS = ("port", "patroni_rest_port", "etcd_client_port", "etcd_peer_port")


@dataclass
class DbAws:
    """The database tier's security group rules, from the Pulumi program."""

    ingress: dict[str, set[int]]  # source tier -> ports the database group admits from it
    egress_to_members: set[int]  # ports the database group may send to itself


@dataclass
class DbLayers:
    role: dict[str, dict[str, set]]  # host -> model field -> every value the rendered files use for it
    firewall: dict[str, dict[str, set[int]]]  # host -> group -> ports its firewall admits from each of its hosts
    aws: DbAws
    roadie: dict[str, set]  # model field -> every value roadie's db shell lines use for it


def db_disagreements(db: model.Database, layers: DbLayers) -> list[str]:
    """Every way a layer disagrees with the model's database facts, one line each; [] when they agree."""
    out: list[str] = []
    want = {f: getattr(db, f) for f in DB_FACTS}
    members = {want[f] for f in MEMBER_PORTS}
    for host, facts in sorted(layers.role.items()):
        for f, expected in want.items():
            if facts.get(f) != {expected}:
                out.append(f"database: the role gives {host} the {DB_FACTS[f]} {sorted(facts.get(f, set()))}, "
                           f"the model says {expected}")
    for host, admitted in sorted(layers.firewall.items()):
        missing = members - admitted.get("database", set())
        if missing:
            out.append(f"database: {host}'s firewall does not admit {sorted(missing)} from the other database hosts")
        extra = admitted.get("catalog", set()) & (members - {db.port})
        if extra:
            out.append(f"database: {host}'s firewall admits {sorted(extra)} from the catalog hosts (members only)")
    missing = members - layers.aws.ingress.get("database", set())
    if missing:
        out.append(f"database: the security group does not admit {sorted(missing)} between database hosts")
    missing = members - layers.aws.egress_to_members
    if missing:
        out.append(f"database: the security group does not let database hosts send {sorted(missing)} to each other")
    for tier, ports in sorted(layers.aws.ingress.items()):
        extra = ports & (members - {db.port}) if tier != "database" else set()
        if extra:
            out.append(f"database: the security group admits {sorted(extra)} from the {tier} tier (members only)")
    for f, values in sorted(layers.roadie.items()):
        if values != {want[f]}:
            out.append(f"database: roadie's db commands use the {DB_FACTS[f]} {sorted(values)}, "
                       f"the model says {want[f]}")
    return out


def _url_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def database_role_facts(out: Path) -> tuple[dict[str, dict[str, set]], dict[str, dict[str, set[int]]]]:
    """(role facts, firewall) of each database host, from the files Ansible rendered (render_roles)."""
    groups = {g: json.loads((out / f"{g}-addresses.json").read_text()) for g in ("catalog", "database")}
    role, firewall = {}, {}
    for patroni_yml in sorted(out.glob("*/patroni.yml")):
        host = patroni_yml.parent.name
        patroni = yaml.safe_load(patroni_yml.read_text())
        etcd = dict(line.split("=", 1) for line in (out / host / "etcd.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
        barman_env = dict(line.split("=", 1) for line in (out / host / "barman.env").read_text().splitlines()
                          if "=" in line and not line.startswith("#"))
        pg = patroni["postgresql"]
        role[host] = {
            "port": {_url_port(pg["listen"]), _url_port(pg["connect_address"])},
            "patroni_rest_port": {_url_port(patroni["restapi"][k]) for k in ("listen", "connect_address")},
            "etcd_client_port": {_url_port(u) for u in patroni["etcd3"]["hosts"]}
            | {_url_port(u) for k in ("ETCD_LISTEN_CLIENT_URLS", "ETCD_ADVERTISE_CLIENT_URLS")
               for u in etcd[k].split(",")},
            "etcd_peer_port": {_url_port(u) for k in ("ETCD_LISTEN_PEER_URLS", "ETCD_INITIAL_ADVERTISE_PEER_URLS")
                               for u in etcd[k].split(",")}
            | {_url_port(m.split("=", 1)[1]) for m in etcd["ETCD_INITIAL_CLUSTER"].split(",")},
            "patroni_scope": {patroni["scope"], pg["parameters"]["cluster_name"], barman_env["ROADIE_BARMAN_SERVER"]},
            "backup_prefix": {barman_env["ROADIE_BARMAN_URL"].removeprefix("s3://").split("/", 1)[1]},
        }
        nft, own = (out / host / "nftables.conf").read_text(), patroni["restapi"]["connect_address"].rsplit(":", 1)[0]
        # Ports admitted from each of the group's hosts (the host itself aside: its own traffic is local).
        firewall[host] = {g: set.intersection(*(parse_firewall(nft, [a]) for a in addrs if a != own))
                          for g, addrs in groups.items()}
    assert role, "Ansible rendered no patroni.yml: no hosts in the database group?"
    return role, firewall


def pulumi_db_facts(stack: str = "dev", *overrides: str, stack_file: Path | None = None) -> DbAws:
    _, of = _pulumi_resources(stack, *overrides, stack_file=stack_file)
    role = {g["id"]: g["inputs"]["tags"]["roadie:role"] for g in of("SecurityGroup")}
    ingress: dict[str, set[int]] = {}
    egress: set[int] = set()
    for kind in ("SecurityGroupIngressRule", "SecurityGroupEgressRule"):
        for r in of(kind):
            i = r["inputs"]
            peer = role.get(i.get("referencedSecurityGroupId"), i.get("cidrIpv4"))
            ports = set(range(int(i["fromPort"]), int(i["toPort"]) + 1))
            if kind == "SecurityGroupIngressRule" and role[i["securityGroupId"]] == "database":
                ingress.setdefault(peer, set()).update(ports)
            elif role[i["securityGroupId"]] == "database" and peer == "database":
                egress.update(ports)
    return DbAws(ingress=ingress, egress_to_members=egress)


def roadie_db_facts() -> dict[str, set]:
    """What roadie's db builders put in the shell lines they run when not given values (as ops.py calls them)."""
    from roadie.db import barman, live, patroni

    urls = [re.search(r"u\.Request\('([^']+)'", shlex.split(cmd)[2]).group(1) for cmd in (
        patroni.cluster_cmd("h"), patroni.switchover_cmd("h", "a", "b"), patroni.config_cmd("h"),
        patroni.put_config_cmd("h", {}))]
    removed = shlex.split(live.remove_cluster_cmd().split(" | ", 1)[1])[-1]
    step = next(s for s in live.steps("a", ["b"], "20261123T120000", None, []) if "patronictl remove" in s)
    prefix, scope, base = barman.base_prefix().rstrip("/").rsplit("/", 2)
    return {"patroni_rest_port": {_url_port(u) for u in urls},
            "patroni_scope": {removed, step.rsplit(" ", 1)[1].rstrip(")"), live.scope(), scope},
            "backup_prefix": {prefix}}


@pytest.fixture(scope="module")
def db_local(hosts_local, work) -> tuple[dict, dict]:
    return database_role_facts(work / "baseline" / "rendered")


def test_the_database_extractors_see_what_each_layer_really_does(db_local):
    """Concrete facts read from each layer (the committed model's values)."""
    role, firewall = db_local
    assert sorted(role) == ["db-1", "db-2", "db-3"]
    assert role["db-2"] == {"port": {5432}, "patroni_rest_port": {8008}, "etcd_client_port": {2379},
                            "etcd_peer_port": {2380}, "patroni_scope": {"roadie-catalog"},
                            "backup_prefix": {"database"}}
    # SSH (22) only from the admin sources, not from other members.
    assert firewall["db-1"] == {"database": {5432, 2379, 2380, 8008}, "catalog": {5432}}
    aws = pulumi_db_facts("dev")
    assert aws.ingress == {"catalog": {5432}, "database": {5432, 2379, 2380, 8008}}
    assert aws.egress_to_members == {5432, 2379, 2380, 8008}
    assert roadie_db_facts() == {"patroni_rest_port": {8008}, "patroni_scope": {"roadie-catalog"},
                                 "backup_prefix": {"database"}}


@pytest.mark.parametrize("stack", STACKS)
def test_the_database_layers_agree_with_the_model(stack, db_local):
    """The product as committed: roles, firewall, security groups and roadie use the model's database facts."""
    role, firewall = db_local
    layers = DbLayers(role=role, firewall=firewall, aws=pulumi_db_facts(stack), roadie=roadie_db_facts())
    found = db_disagreements(model.load().database, layers)
    assert found == [], "\n".join(found)


def _roadie_with(w: Path, monkeypatch, **changes) -> dict[str, set]:
    """roadie's db facts while it reads a planted model (as an operator's stale checkout would)."""
    monkeypatch.setenv("ROADIE_STACK_FILE", str(_model_copy(w, **changes)))
    return roadie_db_facts()


def _role_with(w: Path, overrides: dict, where: tuple[str, str] = ("group_vars", "database")) -> tuple[dict, dict]:
    kind, name = where
    return database_role_facts(render_roles(w, _inventory_copy(w, name, overrides, kind)))


# Each planted drift of a database fact into one layer: (plant, text each reported line must start with).
PLANTED_DB = {
    "role-rest-port-literal": (
        lambda w, mp: {"role": _role_with(w, {"database_patroni_rest_port": 8010})},
        ["database: the role gives db-1 the Patroni REST port [8010], the model says 8008",
         "database: the role gives db-3 the Patroni REST port [8010], the model says 8008"]),
    "role-etcd-ports-literal": (
        lambda w, mp: {"role": _role_with(w, {"database_etcd_client_port": 2479, "database_etcd_peer_port": 2480})},
        ["database: the role gives db-2 the etcd client port [2479], the model says 2379",
         "database: the role gives db-2 the etcd peer port [2480], the model says 2380"]),
    "role-backup-prefix-and-server": (
        lambda w, mp: {"role": _role_with(w, {"database_backup_prefix": "pg", "database_backup_server": "main"})},
        ["database: the role gives db-1 the backup prefix ['pg'], the model says database",
         "database: the role gives db-1 the Patroni scope ['main', 'roadie-catalog'], the model says roadie-catalog"]),
    "firewall-closed-to-etcd-peers": (
        lambda w, mp: {"role": _role_with(w, {"common_firewall_allow": [
            {"port": 5432, "from_groups": ["catalog", "database"]}, {"port": 2379, "from_groups": ["database"]},
            {"port": 8008, "from_groups": ["database", "catalog"]}]}, ("host_vars", "db-1"))},
        ["database: db-1's firewall does not admit [2380] from the other database hosts",
         "database: db-1's firewall admits [8008] from the catalog hosts (members only)"]),
    "security-groups-from-another-model": (
        lambda w, mp: {"aws": pulumi_db_facts("dev", stack_file=_model_copy(w, **{"database.etcd_peer_port": 2390,
                                                                                "database.patroni_rest_port": 8010}))},
        ["database: the security group does not admit [2380, 8008] between database hosts",
         "database: the security group does not let database hosts send [2380, 8008] to each other"]),
    "roadie-from-another-model": (
        lambda w, mp: {"roadie": _roadie_with(w, mp, **{"database.patroni_rest_port": 8010,
                                                        "database.patroni_scope": "other",
                                                        "database.backup_prefix": "pg"})},
        ["database: roadie's db commands use the Patroni REST port [8010], the model says 8008",
         "database: roadie's db commands use the Patroni scope ['other'], the model says roadie-catalog",
         "database: roadie's db commands use the backup prefix ['pg'], the model says database"]),
}


@pytest.mark.parametrize("name", list(PLANTED_DB))
def test_each_planted_database_drift_is_reported(name, db_local, tmp_path, monkeypatch):
    plant, expected = PLANTED_DB[name]
    role, firewall = db_local
    db = model.load().database  # the committed model: the reference, whatever a plant makes a layer read
    planted = plant(tmp_path, monkeypatch)
    if "role" in planted:
        role, firewall = planted["role"]
    layers = DbLayers(role=role, firewall=firewall, aws=planted.get("aws") or pulumi_db_facts("dev"),
                      roadie=planted.get("roadie") or roadie_db_facts())
    found = db_disagreements(db, layers)
    for text in expected:
        assert [line for line in found if line.startswith(text)], f"{text!r} not reported; got {found}"


# The comparison alone, on planted facts: each rule fires by itself and only then.

def _db_agreeing() -> DbLayers:
    role = {"d1": {"port": {5432}, "patroni_rest_port": {8008}, "etcd_client_port": {2379}, "etcd_peer_port": {2380},
                   "patroni_scope": {"roadie-catalog"}, "backup_prefix": {"database"}}}
    return DbLayers(role=role, firewall={"d1": {"database": {5432, 2379, 2380, 8008}, "catalog": {5432}}},
                    aws=DbAws(ingress={"catalog": {5432}, "database": {5432, 2379, 2380, 8008}},
                              egress_to_members={5432, 2379, 2380, 8008}),
                    roadie={"patroni_rest_port": {8008}, "patroni_scope": {"roadie-catalog"},
                            "backup_prefix": {"database"}})


PURE_DB = [
    ("role.d1.etcd_peer_port", {2380, 2381}, "database: the role gives d1 the etcd peer port [2380, 2381]"),
    ("role.d1.patroni_scope", {"main"}, "database: the role gives d1 the Patroni scope ['main'], the model says"),
    ("firewall.d1.database", {5432, 2379, 2380}, "database: d1's firewall does not admit [8008] from the other"),
    ("firewall.d1.catalog", {5432, 2379}, "database: d1's firewall admits [2379] from the catalog hosts"),
    ("aws.ingress.database", {5432}, "database: the security group does not admit [2379, 2380, 8008] between"),
    ("aws.ingress.catalog", {5432, 8008}, "database: the security group admits [8008] from the catalog tier"),
    ("aws.egress_to_members", {5432, 2379, 2380}, "database: the security group does not let database hosts send "
                                                  "[8008]"),
    ("roadie.backup_prefix", {"backups"}, "database: roadie's db commands use the backup prefix ['backups']"),
]


@pytest.mark.parametrize("dotted, value, expected", PURE_DB, ids=[p[0] for p in PURE_DB])
def test_the_database_comparison_reports_each_planted_fact(dotted, value, expected):
    db = model.load().database
    assert db_disagreements(db, _db_agreeing()) == []
    layers = _db_agreeing()
    _set(layers, dotted, value)
    found = db_disagreements(db, layers)
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize(("key", "value", "message"), [
    ("etcd_peer_port", 2379, "stack.yml: database: Value error, two database listeners share a port"),
    ("patroni_rest_port", 5432, "stack.yml: database: Value error, two database listeners share a port"),
    ("etcd_client_port", 70000, "stack.yml: database.etcd_client_port: Input should be less than or equal to 65535"),
    ("patroni_scope", "roadie catalog; rm -rf /", "stack.yml: database.patroni_scope: String should match pattern"),
    ("backup_prefix", "/database/", "stack.yml: database.backup_prefix: String should match pattern"),
    ("patroni_rest_port", None, "stack.yml: database.patroni_rest_port: Input should be a valid integer"),
])
def test_the_model_refuses_bad_database_facts_in_one_line(key, value, message):
    """A bad fact fails every layer's reading of stack.yml in one line, rather than reaching some layers."""
    from roadie.errors import BadInput

    doc = yaml.safe_load(STACK_FILE.read_text())
    assert model.parse(doc).database.backup_server == doc["roadie_database"]["patroni_scope"]
    doc["roadie_database"][key] = value
    with pytest.raises(BadInput) as exc:
        model.parse(doc)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
