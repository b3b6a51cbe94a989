"""Pinning AWS hosts' SSH host keys from their EC2 console output (`roadie hosts pin-keys`).

roadie's SSH transport refuses any host key its environment's known_hosts does
not list. On AWS nothing writes that file, and asking the host itself over SSH
(ssh-keyscan) would trust whatever answers. The console output is the host's own
word, read through the EC2 API with the operator's credentials: cloud-init prints
the host keys there at the instance's first boot, between

    -----BEGIN SSH HOST KEY KEYS-----      full public keys: they can be pinned
    -----BEGIN SSH HOST KEY FINGERPRINTS-----   fingerprints: they can check a key, not pin one

Everything above the I/O section at the end is pure (text and inventory hosts
in, text and outcomes out); only `console_text`, `read_consoles` (the EC2 API)
and `save` (the file) touch the world.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from roadie.errors import BadInput
from roadie.inventory import Host

KEYS = ("-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----")
FINGERPRINTS = ("-----BEGIN SSH HOST KEY FINGERPRINTS-----", "-----END SSH HOST KEY FINGERPRINTS-----")
BASTION_VAR = "roadie_bastion_instance_id"
PARALLEL = 8  # console reads at once (each is one small API call)

# A public key anywhere on a console line (after a `ec2: ` or syslog prefix, before a comment).
_KEY = re.compile(r"(?:^|\s)(?P<type>(?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+)\s+(?P<key>AAAA[A-Za-z0-9+/]+={0,3})(?=\s|$)")
# `256 SHA256:... root@host (ED25519)` as ssh-keygen -l prints it; old OpenSSH printed MD5 hex pairs.
_FINGERPRINT = re.compile(r"(?:^|\s)\d+\s+(?P<fp>SHA256:[A-Za-z0-9+/]{43}|(?:MD5:)?(?:[0-9a-f]{2}:){15}[0-9a-f]{2})"
                          r"(?:\s.*?)?(?:\((?P<label>[A-Z0-9-]+)\))?\s*$")


# -- reading a console -------------------------------------------------------------------------------


def _blob(keytype: str, key: str) -> bytes | None:
    """The key's bytes if `key` is well-formed base64 whose wire format names `keytype`, else None."""
    try:
        blob = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return None
    n = int.from_bytes(blob[:4], "big")
    return blob if len(blob) > 4 + n and blob[4:4 + n] == keytype.encode() else None


def _last_block(lines: list[str], markers: tuple[str, str]) -> list[str] | None:
    """The lines of the last complete BEGIN..END block (cloud-init prints one per first boot), or None."""
    begin, end = markers
    found, current = None, None
    for line in lines:
        if begin in line:
            current = []
        elif end in line:
            if current is not None:
                found = current
            current = None
        elif current is not None:
            current.append(line)
    return found


def parse_console(text: str) -> list[tuple[str, str]]:
    """(type, base64 key) of each host key in the console's last SSH HOST KEY KEYS block, in its order.

    Lines that are not a well-formed key (kernel messages interleaved, a line cut
    short) are skipped: a key whose bytes do not name its own type is never pinned.
    """
    block = _last_block(text.splitlines(), KEYS) or []
    keys: list[tuple[str, str]] = []
    for line in block:
        m = _KEY.search(line)
        if m and _blob(m["type"], m["key"]) and (m["type"], m["key"]) not in keys:
            keys.append((m["type"], m["key"]))
    return keys


def parse_fingerprints(text: str) -> list[tuple[str | None, str]]:
    """(label such as ED25519 or None, fingerprint such as SHA256:...) from the last fingerprints block."""
    block = _last_block(text.splitlines(), FINGERPRINTS) or []
    found = []
    for line in block:
        m = _FINGERPRINT.search(line)
        if m:
            fp = m["fp"] if m["fp"].startswith(("SHA256:", "MD5:")) else f"MD5:{m['fp']}"
            found.append((m["label"], fp))
    return found


def fingerprint(key: str) -> str:
    """SHA256:BASE64 (no padding), as `ssh-keygen -l` prints it, of a base64 public key."""
    digest = hashlib.sha256(base64.b64decode(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _md5(key: str) -> str:
    digest = hashlib.md5(base64.b64decode(key), usedforsecurity=False).hexdigest()
    return "MD5:" + ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def label(keytype: str) -> str:
    """The name ssh-keygen gives a key type in its fingerprint lines (ssh-ed25519 -> ED25519)."""
    sk = keytype.startswith("sk-")
    base = keytype.removeprefix("sk-").split("@")[0]
    name = ("RSA" if base == "ssh-rsa" else "DSA" if base == "ssh-dss" else "ECDSA" if base.startswith("ecdsa-")
            else "ED25519" if base == "ssh-ed25519" else base.upper())
    return f"{name}-SK" if sk else name


def contradicted(keys: list[tuple[str, str]], fingerprints: list[tuple[str | None, str]]) -> list[tuple[str, str]]:
    """The keys whose type has fingerprints printed beside them, none of them the key's own.

    Only labelled fingerprints (`... (ED25519)`) count: cloud-init may print some
    types' fingerprints and not their keys, or the other way round."""
    out = []
    for keytype, key in keys:
        listed = {fp for lab, fp in fingerprints if lab == label(keytype)}
        if listed and not listed & {fingerprint(key), _md5(key)}:
            out.append((keytype, key))
    return out


# -- known_hosts -------------------------------------------------------------------------------------


def host_field(address: str, port: int = 22) -> str:
    """How known_hosts names a host: ADDRESS, or [ADDRESS]:PORT off port 22 (as ssh and paramiko look it up)."""
    return address if int(port) == 22 else f"[{address}]:{port}"


def _names(pattern_field: str, address: str) -> tuple[bool, list[str]]:
    """Whether a line's host field names `address`, and its other patterns (kept on the line)."""
    matched, rest = False, []
    for pattern in pattern_field.split(","):
        if pattern.startswith("|1|"):
            try:
                salt, digest = (base64.b64decode(p) for p in pattern[3:].split("|", 1))
            except (binascii.Error, ValueError):
                rest.append(pattern)
                continue
            if hmac.compare_digest(hmac.new(salt, address.encode(), hashlib.sha1).digest(), digest):
                matched = True
                continue
        elif pattern.lower() == address.lower():
            matched = True
            continue
        rest.append(pattern)
    return matched, rest


@dataclass(frozen=True)
class Change:
    """What merging does to one key of one address."""

    address: str
    keytype: str
    kind: str  # "new" | "same" | "changed" | "removed"
    fingerprint: str | None  # of the key pinned now (None: removed)
    previous: tuple[str, ...] = ()  # fingerprints of the keys it replaces (changed, removed)

    def as_dict(self) -> dict:
        return {"address": self.address, "type": self.keytype, "change": self.kind, "fingerprint": self.fingerprint,
                "previous": list(self.previous)}


def _changes(address: str, old: list[tuple[str, str]], new: list[tuple[str, str]]) -> list[Change]:
    changes = []
    for keytype in dict.fromkeys([t for t, _ in new] + [t for t, _ in old]):
        now = [k for t, k in new if t == keytype]
        was = list(dict.fromkeys(k for t, k in old if t == keytype))
        dropped = tuple(fingerprint(k) for k in was if k not in now)
        for key in now:
            kind = "same" if key in was else "changed" if dropped else "new"
            changes.append(Change(address, keytype, kind, fingerprint(key), dropped if kind == "changed" else ()))
        if dropped and all(k in was for k in now):  # the type is gone, or had a key more than it has now
            changes += [Change(address, keytype, "removed", None, (fp,)) for fp in dropped]
    return changes


def merge(existing_text: str, address: str, keys: list[tuple[str, str]]) -> tuple[str, list[Change]]:
    """known_hosts text with `address` pinned to exactly `keys`, and what that changes per key.

    The address's old lines go (a line naming other hosts too keeps them); the new
    ones (`ADDRESS TYPE KEY`) take the place of the first. Comments, other hosts,
    `@revoked` and `@cert-authority` lines stay as they are. With no keys, or keys
    it already has, the text comes back unchanged.
    """
    keys = list(dict.fromkeys(keys))
    if not keys:
        return existing_text, []
    kept: list[str] = []
    old: list[tuple[str, str]] = []
    at = None
    for line in existing_text.splitlines():
        parts = line.split()
        if len(parts) < 3 or line.lstrip().startswith(("#", "@")):
            kept.append(line)
            continue
        matched, rest = _names(parts[0], address)
        if not matched:
            kept.append(line)
            continue
        old.append((parts[1], parts[2]))
        at = len(kept) if at is None else at
        if rest:
            kept.append(" ".join([",".join(rest), *parts[1:]]))
    changes = _changes(address, old, keys)
    if all(c.kind == "same" for c in changes):
        return existing_text, changes
    at = len(kept) if at is None else at
    lines = kept[:at] + [f"{address} {t} {k}" for t, k in keys] + kept[at:]
    return "\n".join(lines) + "\n", changes


def pinned(existing_text: str, address: str) -> bool:
    """Whether known_hosts has a key for `address`."""
    return any(len(p) >= 3 and not p[0].startswith(("#", "@")) and _names(p[0], address)[0]
               for p in (line.split() for line in existing_text.splitlines()))


# -- what to pin -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One machine whose keys are read: an inventory host, or the bastion in front of some."""

    name: str
    address: str  # as known_hosts names it
    instance_id: str | None  # None: a bastion roadie cannot find (skipped, with a note)
    bastion_for: tuple[str, ...] = ()  # the hosts it is the ProxyJump of; empty for a host


def targets(selected: list[Host], every: list[Host]) -> list[Target]:
    """The selected hosts, then each distinct bastion in front of them; BadInput if a host has no instance id.

    A bastion's instance is `roadie_bastion_instance_id` in the inventory, or the
    inventory host it is (by name or address); without either it is a Target
    with no instance id, reported and skipped.
    """
    from roadie.transport import jump_of

    lacking = [h.name for h in selected if not _iid(h)]
    if lacking:
        raise BadInput(f"{', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no instance id "
                       "(instance_id or ansible_aws_ssm_instance_id) in the inventory: pin-keys reads host keys "
                       "from the EC2 console output; nothing was changed.")
    found = [Target(h.name, host_field(h.address), _iid(h)) for h in selected]
    bastions: dict[str, dict] = {}  # known_hosts address -> name, instance id, the hosts behind it
    for h in selected:
        jump = jump_of(h)
        if jump is None:
            continue
        same = next((b for b in every if jump.host in (b.name, b.address)), None)
        iid = h.vars.get(BASTION_VAR) or (same and _iid(same))
        b = bastions.setdefault(host_field(jump.host, jump.port), {"name": jump.host, "iid": None, "via": []})
        if iid and b["iid"] and str(iid) != b["iid"]:
            raise BadInput(f"The bastion {jump.host} is two instances in the inventory ({b['iid']} and {iid}, "
                           f"{BASTION_VAR}); nothing was changed.")
        b["iid"] = b["iid"] or (str(iid) if iid else None)
        b["via"].append(h.name)
    at_hosts = {t.address for t in found}  # a bastion that is a selected host is pinned as that host
    found += [Target(b["name"], address, b["iid"], tuple(b["via"])) for address, b in bastions.items()
              if address not in at_hosts]
    return found


def _iid(h: Host) -> str | None:
    """The host's instance id as the SSM transport reads it, or None."""
    from roadie.transport.ssm import instance_id

    try:
        return instance_id(h)
    except BadInput:
        return None


@dataclass
class Outcome:
    target: Target
    keys: list[tuple[str, str]] = field(default_factory=list)  # pinned (or to be)
    changes: list[Change] = field(default_factory=list)
    problem: str | None = None  # why nothing was pinned for it

    @property
    def failed(self) -> bool:
        """No key for a machine roadie looked for (a bastion it could not find is a note, not a failure)."""
        return self.problem is not None and self.target.instance_id is not None

    def as_dict(self) -> dict:
        t = self.target
        return {"name": t.name, "role": "bastion" if t.bastion_for else "host", "address": t.address,
                "instance_id": t.instance_id, **({"bastion_for": list(t.bastion_for)} if t.bastion_for else {}),
                "keys": [c.as_dict() for c in self.changes], "problem": self.problem}


def outcome(target: Target, text: str | None, error: str | None = None) -> Outcome:
    """What a console (text, or the error reading it) gives for one target; no known_hosts yet."""
    if target.instance_id is None:
        return Outcome(target, problem="its instance is unknown, so its key was not read")
    if error is not None:
        return Outcome(target, problem=f"its console output could not be read: {error}")
    if not (text or "").strip():
        return Outcome(target, problem="its console output is empty (EC2 has it a few minutes after the instance "
                                       "boots); run this again later")
    keys, fps = parse_console(text), parse_fingerprints(text)
    if not keys:
        if fps:
            return Outcome(target, problem="its console output has only the host keys' fingerprints, which can "
                                           "check a key but not pin one (cloud-init's ssh_key_console_blacklist?)")
        return Outcome(target, problem="its console output has no SSH HOST KEY KEYS block (cloud-init prints it "
                                       "once, at the first boot, and EC2 keeps the last 64 KB of the console)")
    bad = contradicted(keys, fps)
    if bad:
        return Outcome(target, problem="the keys in its console output do not match the fingerprints printed "
                                       "beside them (" + ", ".join(f"{t} {fingerprint(k)}" for t, k in bad) +
                                       "); it may be an attack or a garbled console")
    return Outcome(target, keys=keys)


def pin(existing_text: str, outcomes: list[Outcome]) -> str:
    """known_hosts text with every outcome's keys merged in (each outcome's changes filled in)."""
    text = existing_text
    for o in outcomes:
        if o.keys:
            text, o.changes = merge(text, o.target.address, o.keys)
    return text


# -- I/O: the console, the file ----------------------------------------------------------------------

LATEST_UNSUPPORTED = ("UnsupportedOperation", "InvalidParameter", "InvalidParameterValue",
                      "InvalidParameterCombination")


def console_text(ec2, instance_id: str) -> str:
    """The instance's console output as text (botocore decodes the API's base64 itself), "" when there is none.

    `Latest` (the live console) is asked for first; instance types without it
    (not Nitro) give the output EC2 buffered at the last boot.
    """
    from botocore.exceptions import ClientError

    try:
        answer = ec2.get_console_output(InstanceId=instance_id, Latest=True)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in LATEST_UNSUPPORTED:
            raise
        answer = ec2.get_console_output(InstanceId=instance_id)
    return answer.get("Output") or ""


def read_consoles(ec2, found: list[Target]) -> list[Outcome]:
    """Each target's outcome, the consoles read PARALLEL at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.exceptions import BotoCoreError, ClientError

    def one(t: Target) -> Outcome:
        if t.instance_id is None:
            return outcome(t, None)
        try:
            return outcome(t, console_text(ec2, t.instance_id))
        except (BotoCoreError, ClientError) as exc:
            return outcome(t, None, str(exc))

    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(found)))) as pool:
        return list(pool.map(one, found))


def save(path: Path, text: str) -> None:
    """Write known_hosts whole or not at all (a rename), mode 0600, its directory made 0700 if missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
