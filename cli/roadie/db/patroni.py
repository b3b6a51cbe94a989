"""Pure pieces for talking to Patroni on the database hosts: the shell lines roadie
runs there over SSH (hosts have python3, not curl) and what their answers mean.

Patroni's REST API listens on each member's own address, firewalled to the
database hosts, so roadie asks it from a member, through its SSH transport.
Its unsafe endpoints (POST, PUT, PATCH, DELETE) ask for the credentials the
database role writes in the member's Patroni configuration (restapi.authentication):
the line roadie runs reads them there, on the member, so they are never on a
command line, in roadie's output or in the audit log. GETs need none.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass

from roadie import model
from roadie.errors import BadInput, OperationFailed

# A standby further behind than this is not a switchover target (Patroni's own
# maximum_lag_on_failover in the role's defaults).
MAX_LAG_BYTES = 1048576
STANDBY_ROLES = ("sync_standby", "replica")
HEALTHY_STATES = ("running", "streaming")
# The member's Patroni configuration (the database role's), holding restapi.authentication.
CONFIG = "/etc/patroni/config.yml"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _credentials() -> str:
    """Lines that add HTTP basic authentication from the member's Patroni configuration to `hdr`; none
    there (a cluster the role has not converged yet) sends none, and Patroni's 401 says why."""
    return ("import base64, yaml\n"
            "try:\n"
            f"    a = (yaml.safe_load(open({CONFIG!r})).get('restapi') or {{}}).get('authentication')\n"
            "except OSError:\n"
            "    a = None\n"
            "if a:\n"
            "    hdr['Authorization'] = 'Basic ' + base64.b64encode(('%s:%s' % (a['username'], a['password']))"
            ".encode()).decode()\n")


def _http(method: str, url: str, body: dict | None = None, timeout: float = 60) -> str:
    """A python3 one-liner printing `STATUS BODY` (errors too: HTTPError is an answer)."""
    data = repr(json.dumps(body).encode()) if body is not None else "None"
    code = ("import urllib.request as u, urllib.error as e\n"
            "hdr = {'Content-Type': 'application/json'}\n"
            f"{'' if method in SAFE_METHODS else _credentials()}"
            f"r = u.Request({url!r}, data={data}, method={method!r}, headers=hdr)\n"
            "try:\n"
            f"    x = u.urlopen(r, timeout={timeout}); print(x.status, x.read().decode())\n"
            "except e.HTTPError as h:\n"
            "    print(h.code, h.read().decode())\n")
    return f"python3 -c {shlex.quote(code)}"


def _url(address: str, port: int | None, path: str) -> str:
    """PORT, or the service model's (roadie_database.patroni_rest_port, as the role configures Patroni)."""
    return f"http://{address}:{port or model.load().database.patroni_rest_port}{path}"


def cluster_cmd(address: str, port: int | None = None) -> str:
    return _http("GET", _url(address, port, "/cluster"), timeout=10)


def switchover_cmd(address: str, leader: str, candidate: str, port: int | None = None) -> str:
    return _http("POST", _url(address, port, "/switchover"), {"leader": leader, "candidate": candidate})


def config_cmd(address: str, port: int | None = None) -> str:
    """The cluster's dynamic configuration (what `patronictl edit-config` changes), as JSON."""
    return _http("GET", _url(address, port, "/config"), timeout=10)


def put_config_cmd(address: str, config: dict, port: int | None = None) -> str:
    """Replace the dynamic configuration with CONFIG (PUT /config, the whole document)."""
    return _http("PUT", _url(address, port, "/config"), config)


def split_answer(text: str) -> tuple[int, str]:
    status, _, body = text.strip().partition(" ")
    try:
        return int(status), body
    except ValueError:
        raise OperationFailed(f"Patroni gave no HTTP answer: {text.strip()[:200]!r}") from None


@dataclass(frozen=True)
class Member:
    name: str
    role: str          # leader, sync_standby or replica
    state: str         # running, streaming, stopped, starting, ...
    lag: int | None    # bytes behind the leader (None: leader, or unknown)
    timeline: int | None
    host: str

    @property
    def healthy_standby(self) -> bool:
        return self.role in STANDBY_ROLES and self.state in HEALTHY_STATES and self.lag is not None


def parse_cluster(doc: dict) -> list[Member]:
    """Patroni's /cluster answer as members, in name order."""
    out = []
    for m in doc.get("members", []):
        lag = m.get("lag")
        role = {"master": "leader", "primary": "leader", "standby_leader": "leader"}.get(m.get("role"), m.get("role"))
        out.append(Member(name=m["name"], role=role, state=m.get("state", "unknown"),
                          lag=None if role == "leader" or not isinstance(lag, int) else lag,
                          timeline=m.get("timeline"), host=m.get("host", "")))
    return sorted(out, key=lambda m: m.name)


def leader(members: list[Member]) -> Member | None:
    return next((m for m in members if m.role == "leader" and m.state in HEALTHY_STATES), None)


def choose_target(members: list[Member], to: str | None, max_lag: int = MAX_LAG_BYTES) -> tuple[Member, Member]:
    """(leader, candidate) for a switchover, or BadInput saying why not (nothing changed)."""
    lead = leader(members)
    if lead is None:
        raise BadInput("No running leader: Patroni must be leading before a switchover (see `roadie db status`).")
    by_name = {m.name: m for m in members}
    if to is not None:
        if to not in by_name:
            raise BadInput(f"{to} is not a member of the database cluster ({', '.join(sorted(by_name))}).")
        target = by_name[to]
        if target.role == "leader":
            raise BadInput(f"{to} is already the leader.")
        if not target.healthy_standby:
            raise BadInput(f"{to} is not a healthy standby (role {target.role}, state {target.state}).")
        if target.lag > max_lag:
            raise BadInput(f"{to} is {target.lag} bytes behind the leader, over the bound of {max_lag}.")
        return lead, target
    standbys = [m for m in members if m.healthy_standby]
    if not standbys:
        raise BadInput("No standby is streaming: a switchover now would lose the only copy's service.")
    within = [m for m in standbys if m.lag <= max_lag]
    if not within:
        raise BadInput(f"Every standby is over the lag bound of {max_lag} bytes "
                       f"({', '.join(f'{m.name} {m.lag}' for m in standbys)}).")
    # The synchronous standby has every acknowledged commit: prefer it.
    within.sort(key=lambda m: (m.role != "sync_standby", m.lag, m.name))
    return lead, within[0]


def as_dicts(members: list[Member]) -> list[dict]:
    return [asdict(m) for m in members]
