"""`roadie hosts pin-keys`: thin over roadie.hostkeys (the hosts' SSH keys, from their EC2 console output)."""

from __future__ import annotations

import time

import click

from roadie import output
from roadie.cli import options
from roadie.errors import OperationFailed


@click.group()
def hosts():
    """The environment's hosts: pin-keys pins their SSH host keys from the EC2 console output."""


def _describe(o) -> str:
    t = o.target
    where = t.instance_id if t.address == t.name else f"{t.address}, {t.instance_id}"
    who = f"{'bastion ' if t.bastion_for else ''}{t.name} ({where})"
    if o.problem:
        return f"{who}: nothing pinned: {o.problem}"
    parts = []
    for c in o.changes:
        if c.kind == "changed":
            parts.append(f"CHANGED {c.keytype} {', '.join(c.previous)} -> {c.fingerprint}")
        elif c.kind == "removed":
            parts.append(f"drop {c.keytype} {c.previous[0]} (not in the console)")
        else:
            parts.append(f"{'pin' if c.kind == 'new' else 'unchanged'} {c.keytype} {c.fingerprint}")
    return f"{who}: " + "; ".join(parts)


def _bastion_note(o, env: str, known_hosts, already: bool) -> str:
    t = o.target
    return (f"bastion {t.name} (the ProxyJump of {', '.join(t.bastion_for)}): "
            + ("already pinned, not read again: " if already else "not pinned: ")
            + f"its instance is unknown. Set roadie_bastion_instance_id: i-... in inventories/{env}/group_vars/all/"
              "main.yml and run this again"
            + ("." if already else f", or add its line ({t.address} ssh-ed25519 AAAA..., checked against the "
                                   f"bastion's /etc/ssh/ssh_host_ed25519_key.pub) to {known_hosts}."))


@hosts.command("pin-keys")
@click.option("--hosts", "selection", help="Groups or hosts, comma-separated (default: every host).")
@options.plan("Say what would be pinned or replaced; change nothing.")
@options.yes("Replace keys that changed without asking.")
@options.common
@click.pass_context
def pin_keys(ctx, selection, plan_only, yes):
    """Pin each host's SSH host keys (and its bastion's) in the environment's known_hosts, read from the
    EC2 console output that cloud-init writes them to at first boot.

    A key that differs from the one pinned is a replaced instance or an attack:
    it is shown loudly and replaced only with --yes or a typed confirmation.
    A host with no key in its console (just booted: EC2 has the output a few
    minutes later) is reported, the others pinned, and the exit code is 1.
    """
    from roadie import hostkeys
    from roadie.confirm import confirm
    from roadie.events import event
    from roadie.ops import common
    from roadie.transport import ssh_files

    env = ctx.obj.env
    out = output.of(ctx)
    names = common.selection(selection, "--hosts")  # given empty: refused before the inventory is read
    environment = ctx.obj.environment
    inv = environment.inventory
    targets = hostkeys.targets(inv.select(names), list(inv.hosts.values()))
    known_hosts = ssh_files(env)[1]
    started = time.time()
    with out.progress(f"reading the console output of {len(targets)} instance(s)"):
        outcomes = hostkeys.read_consoles(environment.client("ec2"), targets)
    existing = known_hosts.read_text() if known_hosts.exists() else ""
    text = hostkeys.pin(existing, outcomes)

    for o in outcomes:
        if o.target.instance_id is None:
            out.info(_bastion_note(o, env, known_hosts, hostkeys.pinned(existing, o.target.address)))
            continue
        out.line(_describe(o))
        for c in o.changes:
            if c.kind == "changed":
                warn = (f"WARNING: {o.target.name} ({c.address}) has a new {c.keytype} host key "
                        f"{c.fingerprint}, not the pinned {', '.join(c.previous)}: a replaced instance, or "
                        "someone in the middle. Check before you pin it.")
                if out.json:
                    out.emit(event("hosts.key.changed", warn, host=o.target.name, **c.as_dict()))
                else:
                    out.styled(warn, "bold red")
    if inv.env_vars.get("roadie_connection") == "ssm":
        out.info(f"note: the {env} inventory reaches hosts over SSM (roadie_connection: ssm); these keys are "
                 "used once it goes over SSH (roadie_connection: bastion)")

    changed = sorted({o.target.name for o in outcomes for c in o.changes if c.kind == "changed"})
    writes = text != existing
    doc = {"env": env, "plan": plan_only, "known_hosts": str(known_hosts), "written": writes and not plan_only,
           "hosts": [o.as_dict() for o in outcomes]}
    missing = [o.target.name for o in outcomes if o.failed]
    if plan_only or not writes:
        found = any(o.keys for o in outcomes)
        out.result(doc, (f"--plan: nothing changed; {known_hosts} would " + ("change" if writes else "stay as it is"))
                   if plan_only else f"{known_hosts} has these keys already" if found else "nothing pinned")
    else:
        if changed:
            confirm(ctx, f"replace the pinned host keys of {', '.join(changed)} in {env}", yes, production=True)
        hostkeys.save(known_hosts, text)
        _audit(ctx.obj.environment, started, outcomes, missing)
        pinned_keys = sum(1 for o in outcomes for c in o.changes if c.kind in ("new", "changed"))
        out.result(doc, f"pinned {pinned_keys} key(s) in {known_hosts}")
    if missing:
        raise OperationFailed(f"no host key for {', '.join(missing)} (the reasons are above)"
                              + ("; the others were pinned" if writes and not plan_only else ""))


def _audit(environment, started: float, outcomes, missing: list[str]) -> None:
    """One hosts.pin-keys record: the hosts and their keys' fingerprints (the keys are in known_hosts)."""
    from botocore.exceptions import BotoCoreError, ClientError

    hosts = {o.target.name: {"address": o.target.address, "instance_id": o.target.instance_id,
                             "keys": [c.as_dict() for c in o.changes]} for o in outcomes if o.changes}
    try:
        environment.audit("hosts.pin-keys", "partial" if missing else "ok", service="hosts", started=started,
                          missing=missing, hosts=hosts)
    except (BotoCoreError, ClientError) as exc:
        raise OperationFailed(f"The keys are pinned, but the audit record could not be written: {exc}") from None
