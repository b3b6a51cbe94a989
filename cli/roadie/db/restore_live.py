"""`roadie db restore --into live`: the runbook of db/live.py against an environment.

The services that use the database are locked (no deploy runs its migrations
meanwhile) and put in maintenance (clients get 503 with Retry-After, not
errors). A step that fails, or Ctrl-C, brings every member back on its own data
from before; the fresh backup taken first is the second way back.
"""

from __future__ import annotations

import contextlib
import json
import time

from roadie import inventory
from roadie.db import backups, barman, live, ops, patroni
from roadie.environment import Environment
from roadie.errors import OperationFailed

LEADER_WAIT = 180
CLONE_WAIT = 600
CLIENT_WAIT = 120


def _wait(environment: Environment, tr, done, timeout: float, what: str) -> dict[str, patroni.Member]:
    """Poll Patroni until done(members by name) holds; OperationFailed naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    by: dict[str, patroni.Member] = {}
    while True:
        try:
            by = {m.name: m for m in ops.members(environment, tr)[0]}
        except OperationFailed:
            by = {}
        if done(by):
            return by
        if time.monotonic() > deadline:
            seen = ", ".join(f"{m.name} {m.role}/{m.state}" for m in by.values()) or "no member answered"
            raise OperationFailed(f"{what}: not within {timeout:.0f} s ({seen})")
        time.sleep(1)


def _leads(name: str):
    return lambda by: name in by and by[name].role == "leader" and by[name].state == "running"


def _stream(names: list[str]):
    return lambda by: all(n in by and by[n].healthy_standby for n in names)


class _Cluster:
    """The members and what has been done to them, so a failure can be undone step for step."""

    def __init__(self, environment: Environment, tr, lead: inventory.Host, standbys: list[inventory.Host],
                 aside: str, log):
        self.environment, self.tr, self.lead, self.standbys = environment, tr, lead, standbys
        self.aside, self.log = aside, log
        self.stopped: list[inventory.Host] = []
        self.moved: list[inventory.Host] = []

    def run(self, host, command: str, what: str) -> str:
        return self.tr.run(host, command, what)

    def stop_all(self) -> None:
        for h in live.stop_order(self.lead, self.standbys):
            self.stopped.append(h)
            self.run(h, live.stop_member_cmd(), f"stopping Patroni on {h.name}")

    def move_aside(self) -> None:
        for h in [self.lead, *self.standbys]:
            self.run(h, live.move_aside_cmd(self.aside), f"moving the data directory of {h.name} aside")
            self.moved.append(h)

    def start(self, lead_check) -> None:
        """The leader first; the standbys once it leads (they follow or clone from it)."""
        self.run(self.lead, live.start_member_cmd(), f"starting Patroni on {self.lead.name}")
        _wait(self.environment, self.tr, _leads(self.lead.name), LEADER_WAIT, f"{self.lead.name} leading")
        lead_check()
        for h in self.standbys:
            self.run(h, live.start_member_cmd(), f"starting Patroni on {h.name}")
        _wait(self.environment, self.tr, _stream([h.name for h in self.standbys]), CLONE_WAIT,
              f"{', '.join(h.name for h in self.standbys)} streaming from {self.lead.name}")

    def roll_back(self) -> None:
        """Every member back on the data it had: stop all, forget the half-made cluster, put the data back."""
        if not self.stopped:
            return
        self.log("rolling back: every member back on its data from before the restore")
        for h in live.stop_order(self.lead, self.standbys):
            self.run(h, live.stop_member_cmd(), f"stopping Patroni on {h.name}")
        try:
            self.run(self.lead, live.remove_cluster_cmd(), "removing the half-made cluster from etcd")
        except OperationFailed:
            pass  # never removed: etcd still holds the old cluster, which is what the data is
        for h in self.moved:
            self.run(h, live.put_back_cmd(self.aside), f"putting the data directory of {h.name} back")
        self.start(lambda: None)


def run(environment: Environment, plan: dict, log) -> dict:
    from roadie.ops import maintenance
    from roadie.state import table

    tr = environment.transport
    hosts = {h.name: h for h in ops.db_hosts(environment)}
    lead, standbys = hosts[plan["on"]], [hosts[n] for n in plan["standbys"]]
    when = barman.parse_target(plan["target_time"]) if plan["target_time"] else None
    cluster = _Cluster(environment, tr, lead, standbys, live.aside_dir(plan["stamp"]), log)
    start = time.monotonic()
    # Undone in reverse whatever happens, each undo even when one before it fails:
    # maintenance off, then the locks, then the connections.
    with contextlib.ExitStack() as undo:
        for c in plan["clients"]:
            lock = environment.lock(c)
            lock.acquire(table.actor(), "db.restore live", f"restore {plan['backup_id']} over the live cluster")
            undo.callback(lock.release)
            lock.start_renewing()
        if when is not None:
            backups.archive_now(tr, lead, log)
        fresh = backups.backup(environment, {"on": lead.name})
        log(f"fresh backup {fresh['backup_id']} ({fresh['size']} bytes, {fresh['seconds']} s): "
            "the state being replaced stays restorable")
        for c in plan["maintenance"]:
            if not maintenance.switch(environment, c, True, message="db.restore live")["was_on"]:
                undo.callback(maintenance.switch, environment, c, False, message="db.restore live")
        status, body = patroni.split_answer(tr.run(lead, patroni.config_cmd(lead.address),
                                                   "reading Patroni's dynamic configuration"))
        if status != 200:
            raise OperationFailed(f"Patroni answered {status} for its configuration: {body.strip()[:200]}")
        config = json.loads(body)
        down = time.monotonic()
        try:
            cluster.stop_all()
            tr.run(lead, live.remove_cluster_cmd(), "removing the cluster from etcd")
            cluster.move_aside()
            log(f"every member stopped, data directories aside ({cluster.aside}); restoring on {lead.name}")
            tr.run(lead, live.recover_script(plan["backup_id"], when), f"restoring on {lead.name}")
            log(f"restored and recovered to {plan['target_time'] or 'the end of ' + plan['backup_id']}; "
                "starting Patroni")
            cluster.start(lambda: _put_config(tr, lead, config))
        except BaseException as exc:  # Ctrl-C too: no member may stay stopped or on half-restored data
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            try:
                cluster.roll_back()
            except OperationFailed as again:
                raise OperationFailed(f"restore over the live cluster failed ({why[-300:]}) and so did the way "
                                      f"back ({again}); data directories are at {cluster.aside} on "
                                      f"{', '.join(h.name for h in cluster.moved)}; fresh backup "
                                      f"{fresh['backup_id']}") from None
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise OperationFailed(f"restore over the live cluster failed and was rolled back, every member on "
                                  f"its data from before: {why[-400:]}") from None
        probe = tr.run(lead, ops.CATALOG_WRITE_PROBE, "writing to the restored catalog database").split()
        if probe[-1:] != ["f"]:
            raise OperationFailed(f"{lead.name} leads the restored cluster but is in recovery")
        downtime = round(time.monotonic() - down, 2)
        tables = barman.parse_verify(tr.run(lead, barman.verify_cmd("catalog", environment.stack.database.port,
                                                                    live.SERVING_SOCKETS), "verifying the restore"))
        for h in standbys:
            tr.run(h, live.drop_aside_cmd(cluster.aside), f"dropping the old data directory of {h.name}")
        _await_clients(environment, tr, plan["maintenance"], log)
        # The restored cluster runs on a new timeline: a base backup on it, so a later point-in-time
        # restore has one to replay onto (the fresh backup above is on the timeline left behind).
        after = backups.backup(environment, {"on": lead.name})
        log(f"base backup {after['backup_id']} of the restored cluster ({after['seconds']} s)")
        return {"backup_id": plan["backup_id"], "target_time": plan["target_time"], "on": lead.name,
                "into": "live", "fresh_backup": fresh["backup_id"], "after_backup": after["backup_id"],
                "downtime_seconds": downtime,
                "seconds": round(time.monotonic() - start, 2), "tables": tables,
                "kept": {"host": lead.name, "datadir": cluster.aside}, "standbys": plan["standbys"]}


def _put_config(tr, lead: inventory.Host, config: dict, timeout: float = 60) -> None:
    """Patroni writes its bootstrap settings a loop after it leads; then the cluster's own (edit-config
    changes included) go back. Before that, PUT /config fails inside Patroni (no config to compare)."""
    deadline = time.monotonic() + timeout
    while patroni.split_answer(tr.run(lead, patroni.config_cmd(lead.address), "reading Patroni's configuration"))[0] \
            != 200:
        if time.monotonic() > deadline:
            raise OperationFailed(f"Patroni on {lead.name} wrote no configuration within {timeout:.0f} s")
        time.sleep(1)
    status, body = patroni.split_answer(tr.run(lead, patroni.put_config_cmd(lead.address, config),
                                               "putting Patroni's dynamic configuration back"))
    if status != 200:
        raise OperationFailed(f"Patroni refused the saved configuration ({status}): {body.strip()[:200]}")


def _await_clients(environment: Environment, tr, clients: list[str], log) -> None:
    """Until the clients' servers are UP in the balancer again (they reconnect by themselves)."""
    stack, balancer = environment.stack, environment.balancer
    deadline = time.monotonic() + CLIENT_WAIT
    for c in clients:
        backend = stack.service(c).backend
        while not all(s.up for s in balancer.servers(backend).values()):
            if time.monotonic() > deadline:
                log(f"{c}: not every server UP after {CLIENT_WAIT} s; see `roadie ops health`")
                return
            time.sleep(1)
