"""Shell run on a service host to install a release (Capistrano layout).

Every step is safe to repeat and leaves the host consistent if it stops
half-way: a release is unpacked beside its final name and renamed into place,
and `current` is switched by renaming a new symlink over it (atomic).
"""

from __future__ import annotations

import shlex

KEEP_RELEASES = 5


def base(service: str) -> str:
    return f"/srv/{service}"


def release_dir(service: str, version: str) -> str:
    return f"{base(service)}/releases/{version}"


def incoming(service: str, version: str) -> str:
    return f"{base(service)}/releases/.incoming-{version}.tar.gz"


def unpack(service: str, version: str, sha256: str) -> str:
    """Verify the uploaded tarball, unpack it beside its final place, compile its Python, rename it in.

    The artifact carries no bytecode (it is reproducible), and the running
    service may not write any (its release is read-only), so without this
    every restart compiles the app and its libraries again: ~0.2 s of each
    host's downtime in a rotation. The host's own python3, the one bin/serve
    runs, compiles them here, as Debian's py3compile does at install time;
    unchecked-hash because a release never changes. A file that python3
    cannot compile fails the stage, before any host runs the release.
    """
    final, tarball = release_dir(service, version), incoming(service, version)
    tmp = f"{final}.unpacking"
    return " && ".join([
        "set -e",
        f"echo {shlex.quote(sha256 + '  ' + tarball)} | sha256sum --check --quiet --strict",
        f"if [ -d {final} ]; then rm -f {tarball}; exit 0; fi",
        f"rm -rf {tmp}",
        f"mkdir -p {tmp}",
        f"tar -xzf {tarball} -C {tmp} --no-same-owner",
        f"python3 -m compileall -q -j0 --invalidation-mode unchecked-hash {tmp}",
        f"chmod -R go-w {tmp}",
        f"mv -T {tmp} {final}",
        f"rm -f {tarball}",
    ])


def env_file(service: str) -> str:
    return f"{base(service)}/shared/{service}.env"


def as_service(service: str, command: str) -> str:
    """Run `command` as the service's user with its environment file loaded."""
    inner = f"set -a && . {env_file(service)} && set +a && exec {command}"
    return f"runuser -u {service} -- sh -c {shlex.quote(inner)}"


def migrate(version: str) -> str:
    return as_service("catalog", f"{release_dir('catalog', version)}/bin/migrate")


def switch(service: str, version: str) -> str:
    """Point `current` at VERSION; the release it pointed at before becomes `previous`.

    Both links are replaced by renaming (atomic). Switching to the release that is
    already current changes nothing, so a repeated step cannot lose `previous`.
    """
    b, target = base(service), f"releases/{version}"
    return (f"cd {b} && old=$(readlink current || true) && "
            f"if [ -n \"$old\" ] && [ \"$old\" != {target} ]; then "
            f"ln -sfn \"$old\" previous.new && mv -T previous.new previous; fi && "
            f"ln -sfn {target} current.new && mv -T current.new current")


def set_previous(service: str, version: str | None) -> str:
    """Put `previous` back as it was before a deploy that was reverted (none: removed)."""
    b = base(service)
    if not version:
        return f"rm -f {b}/previous"
    return f"cd {b} && ln -sfn releases/{version} previous.new && mv -T previous.new previous"


FACTS = """\
import json, os, subprocess, sys
base, unit = sys.argv[1], sys.argv[2]
def link(name):
    path = os.path.join(base, name)
    return os.path.basename(os.readlink(path)) if os.path.islink(path) else None
def show(prop):
    out = subprocess.run(["systemctl", "show", "-p", prop, "--value", unit], capture_output=True, text=True)
    return out.stdout.strip()
releases = base + "/releases"
names = sorted(n for n in os.listdir(releases) if not n.startswith(".") and not n.endswith(".unpacking"))
st = os.statvfs(releases)
print(json.dumps({"current": link("current"), "previous": link("previous"), "releases": names,
                  "active": show("ActiveState"),
                  "disk_free": st.f_bavail * st.f_frsize}))
"""


def facts(service: str, unit: str) -> str:
    """One line of JSON: current and previous release, releases on disk, the state of `unit` (the tier's, as
    its kind names it: model.Tier.unit), free bytes."""
    return f"python3 -c {shlex.quote(FACTS)} {base(service)} {shlex.quote(unit)}"


def restart(unit: str) -> str:
    return f"systemctl restart {shlex.quote(unit)}"


def wait_active(unit: str, seconds: int = 60) -> str:
    """Wait until `unit` is active (a tier with no health endpoint), failing with its state after `seconds`."""
    u = shlex.quote(unit)
    return (f"for _ in $(seq {max(1, seconds * 5)}); do systemctl is-active --quiet {u} && exit 0; sleep 0.2; done; "
            f"echo \"{unit} is $(systemctl is-active {u}) after {seconds} s\" >&2; exit 1")


def health_script(service: str, version: str, seconds: int = 60, health_path: str = "/healthz",
                  version_path: str = "/version") -> str:
    """Python polling the service where its env says it listens (SERVICE_BIND)
    until `health_path` is 200 and `version_path` says `version`."""
    return (
        "import json, os, sys, time, urllib.request\n"
        f"host, _, port = os.environ[{service.upper() + '_BIND'!r}].rpartition(':')\n"
        "base = 'http://%s:%s' % ('127.0.0.1' if host in ('', '0.0.0.0') else host, port)\n"
        f"deadline = time.time() + {seconds}\n"
        "last = 'no answer'\n"
        "while time.time() < deadline:\n"
        "    try:\n"
        f"        urllib.request.urlopen(base + {health_path!r}, timeout=2)\n"
        f"        got = json.load(urllib.request.urlopen(base + {version_path!r}, timeout=2))\n"
        f"        if got.get('version') == {version!r}:\n"
        "            sys.exit(0)\n"
        "        last = 'version ' + str(got.get('version'))\n"
        "    except Exception as exc:\n"
        "        last = str(exc)\n"
        "    time.sleep(0.05)\n"
        f"sys.exit('not healthy at %s after {seconds} s: %s' % (base, last))\n"
    )


def wait_healthy(service: str, version: str, seconds: int = 60, health_path: str = "/healthz",
                 version_path: str = "/version") -> str:
    script = health_script(service, version, seconds, health_path, version_path)
    return as_service(service, f"python3 -c {shlex.quote(script)}")


def prunable(service: str, keep: int = KEEP_RELEASES) -> str:
    """The releases `prune` removes, one a line (run in the releases directory): `roadie ops disk --plan`."""
    b = base(service)
    return (f"cd {b}/releases && cur=$(basename \"$(readlink -f {b}/current)\") && "
            f"prev=$(if [ -L {b}/previous ]; then basename \"$(readlink -f {b}/previous)\"; fi) && "
            f"slots={keep - 1} && if [ -n \"$prev\" ] && [ \"$prev\" != \"$cur\" ]; then slots=$((slots - 1)); fi && "
            f"ls -1t | grep -v -x -e \"$cur\" -e \"${{prev:-$cur}}\" -e '.*\\.unpacking' -e '\\.incoming-.*' "
            f"| tail -n +$((slots + 1))")


def prune(service: str, keep: int = KEEP_RELEASES) -> str:
    """Keep `keep` releases: `current`, `previous` and the newest others; remove the rest.

    Each goes out of the release list at once (renamed to a dot name, which no
    listing shows) before it is deleted, so an interrupted prune never leaves a
    half-deleted tree that a deploy would take for an unpacked release;
    leftovers of an earlier interrupted prune are deleted too.
    """
    return (f"{prunable(service, keep)} | while read -r r; do mv -T -- \"$r\" \".removing-$r\" && "
            f"rm -rf -- \".removing-$r\"; done; rm -rf -- {base(service)}/releases/.removing-*")
