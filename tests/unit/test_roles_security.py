"""Security and state defects of the roles, checked without the fleet.

Ansible itself renders the roles' templates (a probe play, `connection: local`, the roles'
defaults and argument specs, an inventory and the playbooks' group_vars; the roles' own tasks are
skipped by tag) and the tests read what it wrote:

- HAProxy keeps its runtime server state (a drained server stays drained) across a reload and a
  restart: `server-state-file` + `load-server-state-from-file`, and a systemd drop-in that saves
  `show servers state` just before Debian's reload signals the master, and before a stop;
- HAProxy's stats page asks for credentials (from the environment's secrets);
- Patroni's REST API asks for credentials on its unsafe endpoints, and roadie's own POST/PUT
  send them (read on the member, never on roadie's command line);
- no environment admits SSH or the admin ports from everywhere, and the common role refuses to.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from tests import roleprobe

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = ROOT / "inventories"
PROBE_TAG = "roles_security_probe"

# Secrets the probe gives the roles (the environments' own come from their secret sources).
STATS_PASSWORD = "probe-stats-password-0123456789"
PATRONI_PASSWORD = "probe-patroni-password-0123456789"
SECRETS = {"vault_catalog_db_password": "probe", "vault_replication_password": "probe",
           "vault_database_superuser_password": "probe", "vault_loadbalancer_stats_password": STATS_PASSWORD,
           "vault_patroni_rest_password": PATRONI_PASSWORD}

# Debian 12's haproxy.service (haproxy 2.6.12-1+deb12u4), which the drop-in extends.
DEBIAN_CHECK = "/usr/sbin/haproxy -Ws -f $CONFIG -c -q $EXTRAOPTS"
DEBIAN_SIGNAL = "/bin/kill -USR2 $MAINPID"
DROPIN = "etc/systemd/system/haproxy.service.d/roadie-server-state.conf"
STATE_SCRIPT = "usr/local/sbin/roadie-haproxy-state"


# --- The probe: Ansible renders templates on this machine -----------------------------------------------

def _render(role: str, template: str, name: str) -> dict:
    return {"name": f"Render {name}", "tags": [PROBE_TAG], "ansible.builtin.template": {
        "src": f"{{{{ probe_roles }}}}/{role}/templates/{template}.j2",
        "dest": f"{{{{ probe_out }}}}/{{{{ inventory_hostname }}}}/{name}"}}


def _play(hosts: str, role: str, renders: list[dict]) -> dict:
    # The role's own tasks are skipped (--tags): only its defaults and argument checks apply.
    return {"name": f"Probe {role}", "hosts": hosts, "connection": "local", "gather_facts": False,
            "roles": [role], "tasks": [{"name": "Output directory", "tags": [PROBE_TAG], "ansible.builtin.file": {
                "path": "{{ probe_out }}/{{ inventory_hostname }}", "state": "directory"}}, *renders]}


def probe(work: Path, inventory: Path, plays: list[dict], extra: dict | None = None) -> tuple[Path, dict]:
    """Run the probe plays; (directory of rendered files, one folder per host; {host: first failure message}).

    A host whose argument check or template fails gets no further files; the others go on."""
    play_dir, out = work / "probe", work / "rendered"
    play_dir.mkdir(parents=True)
    (play_dir / "group_vars").symlink_to(ROOT / "playbooks" / "group_vars")
    (play_dir / "probe.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    extra = {"probe_roles": str(ROOT / "roles"), "probe_out": str(out), "ansible_connection": "local",
             "ansible_python_interpreter": sys.executable, "common_admin_users": [], "database_memory_mb": 1024,
             **SECRETS, **(extra or {})}
    ansible = Path(sys.executable).with_name("ansible-playbook")
    cmd = [str(ansible), "-i", str(inventory), str(play_dir / "probe.yml"), "--tags", PROBE_TAG,
           "-e", json.dumps(extra)]
    env = {"PATH": f"{ansible.parent}:/usr/bin:/bin", "HOME": str(work), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_CACHE_PLUGIN": "memory"}
    proc = roleprobe.run(cmd, env, list_env={**env, "ANSIBLE_STDOUT_CALLBACK": "default"})
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-2000:]) from None
    failures: dict[str, str] = {}
    for play in doc["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("failed") and host not in failures:
                    failures[host] = f"{task['task']['name']}: {result.get('msg', '')}"
    return out, failures


def inventory_copy(work: Path, env: str = "local", drop: tuple[str, ...] = (), host_vars: dict | None = None,
                   hosts: dict | None = None) -> Path:
    """A copy of an environment's inventory (links resolved): its group_vars, without the top-level
    settings in `drop`, plus host_vars; `hosts` replaces its host list (a static stand-in for AWS)."""
    inv = work / "inventory" / env
    shutil.copytree(INVENTORIES / env, inv, symlinks=False)
    for name in ("aws_ec2.yml",):
        (inv / name).unlink(missing_ok=True)
    main = inv / "group_vars" / "all" / "main.yml"
    if drop:
        kept = [line for line in main.read_text().splitlines(keepends=True)
                if not any(line.startswith(f"{name}:") for name in drop)]
        main.write_text("".join(kept))
    if hosts is not None:
        (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for host, values in (host_vars or {}).items():
        (inv / "host_vars").mkdir(exist_ok=True)
        (inv / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(values))
    return inv


def sections(cfg: str) -> dict[str, list[str]]:
    """HAProxy configuration sections ('global', 'defaults', 'listen stats', ...) -> their lines, stripped."""
    out: dict[str, list[str]] = {}
    current = None
    for line in cfg.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            current = " ".join(line.split()[:2])
            out[current] = []
        elif current:
            out[current].append(" ".join(line.split()))
    return out


def unit_lines(text: str, section: str = "Service") -> list[tuple[str, str]]:
    """(key, value) of a systemd unit section in file order (keys repeat: ExecReload=)."""
    out, current = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def ssh_sources(nft: str, port: int = 22) -> list[set[str]] | None:
    """The source sets of each rule accepting PORT; [set()] for a rule open to everyone; None when none does."""
    found = []
    for saddr, p in re.findall(r"^\s*(?:ip6? saddr \{([^}]*)\}\s+)?tcp dport (\d+) accept", nft, re.M):
        if int(p) == port:
            found.append({s.strip() for s in saddr.split(",")} if saddr else set())
    return found or None


# --- The local environment, rendered once ---------------------------------------------------------------

LOCAL_PLAYS = [
    _play("all", "common", [_render("common", "etc/nftables.conf", "nftables.conf")]),
    _play("database", "database", [_render("database", "etc/patroni/config.yml", "patroni.yml")]),
    # haproxy.cfg first: a template the role does not have yet fails only the renders after it.
    _play("loadbalancer", "loadbalancer", [_render("loadbalancer", "etc/haproxy/haproxy.cfg", "haproxy.cfg"),
                                           _render("loadbalancer", DROPIN, "dropin.conf"),
                                           _render("loadbalancer", STATE_SCRIPT, "roadie-haproxy-state")]),
]


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("roles-security-local")
    out, failures = probe(work, inventory_copy(work), LOCAL_PLAYS)
    # Nothing may fail but the renders of files the roles do not have (yet).
    assert all("Render dropin" in m or "Render roadie-haproxy-state" in m for m in failures.values()), failures
    return out


def _file(out: Path, host: str, name: str) -> str:
    path = out / host / name
    assert path.is_file(), f"Ansible rendered no {name} for {host}"
    return path.read_text()


# --- HAProxy: runtime state across reloads; a stats page with credentials -------------------------------

def test_haproxy_saves_and_loads_server_state(local):
    cfg = sections(_file(local, "lb-1", "haproxy.cfg"))
    assert "server-state-file /var/lib/haproxy/server-state" in cfg["global"]
    assert "load-server-state-from-file global" in cfg["defaults"]


def test_the_stats_page_asks_for_credentials_and_stays_where_it_was(local):
    stats = sections(_file(local, "lb-1", "haproxy.cfg"))["listen stats"]
    assert f"stats auth roadie:{STATS_PASSWORD}" in stats
    assert "bind 198.18.0.10:8404" in stats and "stats uri /stats" in stats
    assert not [line for line in stats if line.startswith("stats admin")]  # read-only


def test_the_dropin_saves_state_before_every_reload_and_stop(local):
    cfg = sections(_file(local, "lb-1", "haproxy.cfg"))
    socket_path = next(line.split()[2] for line in cfg["global"] if line.startswith("stats socket "))
    state = next(line.split()[1] for line in cfg["global"] if line.startswith("server-state-file "))
    lines = unit_lines(_file(local, "lb-1", "dropin.conf"))
    save = f"-/usr/local/sbin/roadie-haproxy-state save --socket {socket_path} --state {state} --config $CONFIG"
    # A drop-in appends to ExecReload=: it resets the list, then re-lists Debian's two lines with
    # the save between the check and the signal (a bad configuration saves nothing and signals
    # nothing). "-": a failed save never stops a reload or a stop.
    assert [v for k, v in lines if k == "ExecReload"] == ["", DEBIAN_CHECK, save, DEBIAN_SIGNAL]
    # Debian's unit has no ExecStop: systemd signals HAProxy after it, so a restart keeps the state too.
    assert [v for k, v in lines if k == "ExecStop"] == [save]
    # A cold start (boot, a crash) never loads a stale hand-off.
    assert [v for k, v in lines if k == "ExecStartPre"] == [
        f"-/usr/local/sbin/roadie-haproxy-state expire --state {state} --max-age 60"]


def _role_yaml(role: str, kind: str) -> list[dict]:
    return yaml.safe_load((ROOT / "roles" / role / kind / "main.yml").read_text())


def test_the_role_installs_the_dropin_and_reloads_through_systemd():
    tasks = _role_yaml("loadbalancer", "tasks")
    handlers = _role_yaml("loadbalancer", "handlers")
    dests = {t.get("ansible.builtin.template", {}).get("dest"): t for t in tasks}
    dropin = dests.get("/" + DROPIN)
    assert dropin, "no task installs the haproxy.service drop-in"
    assert dests.get("/" + STATE_SCRIPT, {}).get("ansible.builtin.template", {}).get("mode") == "0755"
    # systemd reads the changed unit before HAProxy is started or reloaded through it.
    start = next(t for t in tasks if t.get("ansible.builtin.systemd_service", {}).get("state") == "started")
    assert "_loadbalancer_unit" in str(start["ansible.builtin.systemd_service"].get("daemon_reload")), start
    assert dropin.get("register") == "_loadbalancer_unit"
    reload_ = next(h for h in handlers if h.get("ansible.builtin.systemd_service", {}).get("state") == "reloaded")
    assert reload_["ansible.builtin.systemd_service"]["name"] == "haproxy"
    assert reload_["ansible.builtin.systemd_service"].get("daemon_reload") is True


# --- The state script, run here against a stand-in admin socket ------------------------------------------

HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
          "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
          "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
          "srv_check_addr srv_agent_addr srv_agent_port")
# HAProxy 2.6's `show servers state` (as on lb-1): catalog-1 drained (admin state 8), streaming-1 in
# maintenance (1).
SHOWN = f"""1
{HEADER}
3 catalog 1 catalog-1 198.18.0.11 2 8 1 1 40 15 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 catalog 2 catalog-2 198.18.0.12 2 0 1 1 41 15 3 4 6 0 0 0 - 8080 - 0 0 - - 0
4 streaming 1 streaming-1 198.18.0.13 2 1 1 1 42 15 3 4 6 0 0 0 - 80 - 0 0 - - 0
"""

CONFIG = """global
    stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
backend catalog
    server catalog-1 198.18.0.11:8080 check
    server catalog-2 198.18.0.12:8090 check
backend streaming
    server streaming-1 198.18.0.13:80 check
listen stats
    bind 198.18.0.10:8404
"""


class AdminSocket:
    """A stand-in for HAProxy's runtime API: answers `show servers state` with `answer`, then closes."""

    def __init__(self, path: Path, answer: str):
        self.path, self.answer, self.asked = path, answer, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.asked.append(conn.recv(4096).decode())
                conn.sendall(self.answer.encode())

    def close(self):
        self.sock.close()


@pytest.fixture
def state_script(local, tmp_path) -> list[str]:
    script = tmp_path / "roadie-haproxy-state"
    script.write_text(_file(local, "lb-1", "roadie-haproxy-state"))
    return [sys.executable, str(script)]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def _state_rows(text: str) -> dict[str, list[str]]:
    return {f"{r[1]}/{r[3]}": r for r in (line.split() for line in text.splitlines()[2:] if line)}


def test_save_keeps_the_admin_state_and_takes_each_servers_port_from_the_configuration(state_script, tmp_path):
    cfg, state = tmp_path / "haproxy.cfg", tmp_path / "state" / "server-state"
    cfg.write_text(CONFIG)
    state.parent.mkdir()
    admin = AdminSocket(tmp_path / "admin.sock", SHOWN)
    try:
        proc = _run([*state_script, "save", "--socket", str(tmp_path / "admin.sock"), "--state", str(state),
                     "--config", str(cfg)])
    finally:
        admin.close()
    assert proc.returncode == 0, proc.stderr
    assert admin.asked == ["show servers state\n"]
    text = state.read_text()
    assert text.splitlines()[0] == "1" and text.splitlines()[1].startswith("# be_id ")
    rows = _state_rows(text)
    # catalog-1 stays drained (admin state 8), streaming-1 in maintenance (1), catalog-2 ready (0).
    assert {k: r[6] for k, r in rows.items()} == {"catalog/catalog-1": "8", "catalog/catalog-2": "0",
                                                  "streaming/streaming-1": "1"}
    # HAProxy applies a state file's srv_port over the configuration's: the configuration's wins here.
    assert {k: r[18] for k, r in rows.items()} == {"catalog/catalog-1": "8080", "catalog/catalog-2": "8090",
                                                   "streaming/streaming-1": "80"}
    assert stat.S_IMODE(state.stat().st_mode) == 0o640
    assert [p.name for p in state.parent.iterdir()] == ["server-state"]  # written aside, then renamed


@pytest.mark.parametrize("answer", [None, "Unknown command.\n", ""], ids=["no-socket", "refused", "empty"])
def test_a_failed_save_leaves_no_stale_state_and_never_blocks_the_reload(state_script, tmp_path, answer):
    state = tmp_path / "server-state"
    state.write_text(SHOWN)  # an old hand-off, which must not be loaded by the next process
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(CONFIG)
    admin = AdminSocket(tmp_path / "admin.sock", answer) if answer is not None else None
    try:
        proc = _run([*state_script, "save", "--socket", str(tmp_path / "admin.sock"), "--state", str(state),
                     "--config", str(cfg)])
    finally:
        if admin:
            admin.close()
    assert proc.returncode == 0
    assert state.read_text() == "1\n"  # a valid file with no servers: each starts from the configuration
    assert "server state" in proc.stderr


@pytest.mark.parametrize("age, kept", [(5, True), (600, False)])
def test_a_start_loads_only_a_fresh_hand_off(state_script, tmp_path, age, kept):
    state = tmp_path / "server-state"
    state.write_text(SHOWN)
    then = time.time() - age
    os.utime(state, (then, then))
    proc = _run([*state_script, "expire", "--state", str(state), "--max-age", "60"])
    assert proc.returncode == 0, proc.stderr
    assert state.read_text() == (SHOWN if kept else "1\n")


def test_expire_without_a_state_file_is_quiet(state_script, tmp_path):
    proc = _run([*state_script, "expire", "--state", str(tmp_path / "none"), "--max-age", "60"])
    assert proc.returncode == 0 and proc.stderr == ""


# --- Patroni's REST API: credentials for unsafe endpoints ------------------------------------------------

def test_patroni_asks_for_credentials_on_unsafe_endpoints(local):
    for host in ("db-1", "db-2", "db-3"):
        restapi = yaml.safe_load(_file(local, host, "patroni.yml"))["restapi"]
        assert restapi.get("authentication") == {"username": "roadie", "password": PATRONI_PASSWORD}, host


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization")))
        body = b'{"members": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def patroni_here(tmp_path, monkeypatch):
    """A stand-in Patroni REST API on loopback, and a member's Patroni configuration file."""
    from roadie.db import patroni

    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"scope": "roadie-catalog", "restapi": {
        "listen": "127.0.0.1:8008", "authentication": {"username": "roadie", "password": PATRONI_PASSWORD}}}))
    monkeypatch.setattr(patroni, "CONFIG", str(config), raising=False)
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield patroni, server.server_address[1]
    server.shutdown()
    server.server_close()


UNSAFE = [("switchover", lambda p, port: p.switchover_cmd("127.0.0.1", "db-1", "db-2", port), "POST", True),
          ("put-config", lambda p, port: p.put_config_cmd("127.0.0.1", {"ttl": 20}, port), "PUT", True),
          ("cluster", lambda p, port: p.cluster_cmd("127.0.0.1", port), "GET", False),
          ("config", lambda p, port: p.config_cmd("127.0.0.1", port), "GET", False)]


@pytest.mark.parametrize("name, make, method, authenticated", UNSAFE, ids=[u[0] for u in UNSAFE])
def test_roadie_sends_the_members_patroni_credentials_on_unsafe_calls_only(patroni_here, name, make, method,
                                                                   authenticated):
    patroni, port = patroni_here
    command = make(patroni, port)
    assert PATRONI_PASSWORD not in command  # read on the member: never on a command line or in the audit log
    python, flag, code = shlex.split(command)
    assert (python, flag) == ("python3", "-c")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("200 "), proc.stdout + proc.stderr
    expected = "Basic " + base64.b64encode(f"roadie:{PATRONI_PASSWORD}".encode()).decode() if authenticated else None
    assert _Recorder.seen == [(method, _Recorder.seen[0][1], expected)]


# --- The firewall: nobody admits SSH or the admin ports from everywhere ---------------------------------

def _pulumi(stack: str) -> dict:
    return yaml.safe_load((ROOT / "infra" / f"Pulumi.{stack}.yaml").read_text())["config"]


def _public_subnets(stack: str) -> list[str]:
    """The public subnets of the stack's VPC (where the ALB's nodes take their addresses), as the
    Pulumi program plans them."""
    sys.path.insert(0, str(ROOT / "infra"))
    try:
        from roadie_infra.layout import plan_subnets
    finally:
        sys.path.remove(str(ROOT / "infra"))
    zones = [f"z{i}" for i in range(int(_pulumi(stack)["roadie:azCount"]))]
    return [p.cidr for p in plan_subnets(_pulumi(stack)["roadie:vpcCidr"], zones) if p.kind == "public"]


AWS_ENVS = {"staging": "staging", "production": "prod"}  # inventory -> Pulumi stack


def _aws_hosts(stack: str) -> dict:
    """A static stand-in for what aws_ec2.yml lists: hosts in the stack's private and database
    subnets; the loadbalancer group is the ALB, no host of the inventory."""
    base = _pulumi(stack)["roadie:vpcCidr"].split(".")[:2]
    net = ".".join(base)
    return {"all": {"children": {
        "loadbalancer": {"hosts": {}},
        "catalog": {"hosts": {"catalog-i-1": {"ansible_host": f"{net}.64.10"}}},
        "streaming": {"hosts": {"streaming-i-2": {"ansible_host": f"{net}.80.10"}}},
        "database": {"children": {"database_primary": {"hosts": {"db-1": {"ansible_host": f"{net}.128.10"}}},
                                  "database_replica": {"hosts": {"db-2": {"ansible_host": f"{net}.144.10"}}}}}}}}


@pytest.fixture(scope="module", params=list(AWS_ENVS))
def aws_firewall(request, tmp_path_factory) -> tuple[str, dict[str, str]]:
    env = request.param
    work = tmp_path_factory.mktemp(f"roles-security-{env}")
    inv = inventory_copy(work, env, hosts=_aws_hosts(AWS_ENVS[env]))
    out, failures = probe(work, inv, [_play("all", "common", [_render("common", "etc/nftables.conf",
                                                                       "nftables.conf")])])
    assert failures == {}, failures
    return env, {p.parent.name: p.read_text() for p in out.glob("*/nftables.conf")}


def test_no_aws_environment_admits_anything_from_everywhere(aws_firewall):
    env, rendered = aws_firewall
    assert sorted(rendered) == ["catalog-i-1", "db-1", "db-2", "streaming-i-2"]
    for host, nft in rendered.items():
        for saddr in re.findall(r"saddr \{([^}]*)\}", nft):
            wide = [s.strip() for s in saddr.split(",") if re.search(r"/[0-7]$", s.strip())]
            assert not wide, f"{env} {host} admits {wide}"
        # Only the balancer's port is for everyone, and there is no HAProxy host on AWS.
        assert not re.search(r"^\s*tcp dport \d+ accept", nft, re.M), f"{env} {host}: a port open to everyone"


def test_ssh_only_from_the_environments_admin_range(aws_firewall):
    env, rendered = aws_firewall
    expected = {"staging": [{_pulumi("staging")["roadie:vpcCidr"]}], "production": None}[env]
    for host, nft in rendered.items():
        assert ssh_sources(nft) == expected, f"{env} {host}: {ssh_sources(nft)}"


def test_the_alb_still_reaches_the_services_it_balances(aws_firewall):
    """Narrowing the admin sources must not cut the ALB off: the tiers admit their port from the
    ALB's subnets (the loadbalancer group is no host on AWS)."""
    from roadie import model

    env, rendered = aws_firewall
    for svc in model.load().services.values():
        for host, nft in rendered.items():
            if host.startswith(svc.group):
                allowed = sorted(set().union(*(ssh_sources(nft, svc.port) or [set()])))
                for subnet in _public_subnets(AWS_ENVS[env]):
                    assert ip_in(allowed, subnet), f"{env} {host}: port {svc.port} from {allowed}, not {subnet}"


def test_the_inventories_admin_ranges_are_the_pulumi_stacks():
    """Staging admits the admin ports from its VPC (a bastion there); production, reached only
    through SSM, from nowhere; local from the controller on the fleet bridge."""
    def main(env: str) -> dict:
        return yaml.safe_load((INVENTORIES / env / "group_vars" / "all" / "main.yml").read_text())

    assert main("staging")["common_firewall_admin_sources"] == [_pulumi("staging")["roadie:vpcCidr"]]
    assert main("production")["common_firewall_admin_sources"] == []
    assert main("production")["roadie_connection"] == "ssm"
    assert main("local")["common_firewall_admin_sources"] == ["{{ roadie_fleet_gateway }}/32"]
    for env, stack in AWS_ENVS.items():
        sources = main(env)["common_firewall_group_sources"]["loadbalancer"]
        assert sources and all(ip_in(sources, cidr) for cidr in _public_subnets(stack)), (env, sources)
        assert all(ip_in([_pulumi(stack)["roadie:vpcCidr"]], s) for s in sources), (env, sources)


def ip_in(outer: list[str], inner: str) -> bool:
    import ipaddress

    return any(ipaddress.ip_network(inner).subnet_of(ipaddress.ip_network(o)) for o in outer)


# The common role, given each admin source list (per host, one Ansible run): it refuses a list
# that admits everyone, and a missing one, rather than render a wide-open SSH or admin rule.
ADMIN_CASES = {
    "lb-1": (None, "missing required arguments: common_firewall_admin_sources"),
    "catalog-1": (["0.0.0.0/0"], "common_firewall_admin_sources admits 0.0.0.0/0"),
    "catalog-2": (["::/0"], "common_firewall_admin_sources admits ::/0"),
    "streaming-1": (["10.0.0.0/8", "0.0.0.0/1"], "common_firewall_admin_sources admits 0.0.0.0/1"),
    "streaming-2": ([], None),
    "db-1": (["198.18.0.1/32", "10.20.0.0/16"], None),
}


@pytest.fixture(scope="module")
def admin_cases(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("roles-security-admin")
    inv = inventory_copy(work, drop=("common_firewall_admin_sources",),
                         host_vars={h: {"common_firewall_admin_sources": v} for h, (v, _) in ADMIN_CASES.items()
                                    if v is not None})
    return probe(work, inv, [_play("all", "common", [_render("common", "etc/nftables.conf", "nftables.conf")])])


@pytest.mark.parametrize("host", list(ADMIN_CASES))
def test_the_common_role_refuses_an_open_or_missing_admin_source_list(admin_cases, host):
    out, failures = admin_cases
    sources, refusal = ADMIN_CASES[host]
    if refusal:
        assert refusal in failures.get(host, ""), failures.get(host)
        assert not (out / host / "nftables.conf").exists()
        return
    assert host not in failures, failures[host]
    nft = (out / host / "nftables.conf").read_text()
    assert not re.search(r"\{\s*\}", nft)  # nft refuses an empty set
    assert ssh_sources(nft) == ([set(sources)] if sources else None)
    # The tier's admin ports follow the same list: none from everywhere.
    assert not re.search(r"saddr \{[^}]*/0\b", nft)


# The roles' own checks (assert tasks: pure, they never touch a host), run on loopback stand-ins.

def _checks(role: str, name: str) -> dict:
    task = next((t for t in _role_yaml(role, "tasks") if t.get("name") == name), None)
    assert task, f"roles/{role} has no task {name!r}"
    return {k: v for k, v in task.items() if k != "tags"}


CHECKS = {  # host: (role, check, its variables, refused)
    "open-everywhere": ("common", ["0.0.0.0/0"], {"ansible_connection": "local"}, True),
    "ssh-and-none": ("common", [], {"ansible_connection": "ssh"}, True),
    "ssh-by-default-and-none": ("common", [], {}, True),
    "ssm-and-none": ("common", [], {"ansible_connection": "amazon.aws.aws_ssm"}, False),
    "ssh-and-the-vpc": ("common", ["10.20.0.0/16"], {"ansible_connection": "ssh"}, False),
    "stats-short": ("loadbalancer", "short", {}, True),
    "stats-quote": ("loadbalancer", "a-long-enough-password'x", {}, True),
    "stats-space": ("loadbalancer", "a long enough password x", {}, True),
    "stats-good": ("loadbalancer", "Az09-long-enough:password$x", {}, False),
}
CHECK_TASKS = {"common": "Check the firewall's admin sources", "loadbalancer": "Check the stats page credentials"}


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("roles-security-checks")
    hosts = {}
    for host, (role, value, conn, _) in CHECKS.items():
        given = ({"common_firewall_admin_sources": value} if role == "common"
                 else {"loadbalancer_stats_user": "roadie", "loadbalancer_stats_password": value})
        hosts[host] = {"ansible_host": "127.0.0.1", "probe_role": role, **given, **conn}
    (work / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    plays = [{"name": f"Checks of {role}", "hosts": ",".join(h for h, c in CHECKS.items() if c[0] == role),
              "gather_facts": False, "tasks": [_checks(role, name)]} for role, name in CHECK_TASKS.items()]
    (work / "checks.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    ansible = Path(sys.executable).with_name("ansible-playbook")
    env = {"PATH": f"{ansible.parent}:/usr/bin:/bin", "HOME": str(work), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_CACHE_PLUGIN": "memory", "ANSIBLE_HOST_KEY_CHECKING": "False"}
    proc = subprocess.run([str(ansible), "-i", str(work / "hosts.yml"), str(work / "checks.yml"),
                           "-e", json.dumps({"ansible_python_interpreter": sys.executable})],
                          capture_output=True, text=True, timeout=120, cwd=work, env=env)
    doc = json.loads(proc.stdout)
    return {host: result for play in doc["plays"] for task in play["tasks"] for host, result in task["hosts"].items()}


@pytest.mark.parametrize("host", list(CHECKS))
def test_the_roles_refuse_open_admin_sources_ssh_lockouts_and_unusable_stats_credentials(checks, host):
    role, value, _, refused = CHECKS[host]
    result = checks[host]
    assert bool(result.get("failed")) is refused, result
    assert not result.get("unreachable"), result  # an assert never connects to the host
    if refused and role == "loadbalancer":
        assert value not in json.dumps(result)  # the refusal never prints the password
