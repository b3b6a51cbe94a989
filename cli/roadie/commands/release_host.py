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
    """Verify the uploaded tarball, unpack it beside its final place, rename it in."""
    final, tarball = release_dir(service, version), incoming(service, version)
    tmp = f"{final}.unpacking"
    return " && ".join([
        "set -e",
        f"echo {shlex.quote(sha256 + '  ' + tarball)} | sha256sum --check --quiet --strict",
        f"if [ -d {final} ]; then rm -f {tarball}; exit 0; fi",
        f"rm -rf {tmp}",
        f"mkdir -p {tmp}",
        f"tar -xzf {tarball} -C {tmp} --no-same-owner",
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
    link = f"{base(service)}/current"
    return f"ln -sfn releases/{version} {link}.new && mv -T {link}.new {link}"


def current(service: str) -> str:
    return f"readlink {base(service)}/current || true"


def restart(service: str) -> str:
    return f"systemctl restart {service}.service"


def health_script(service: str, version: str, seconds: int = 60) -> str:
    """Python polling the service where its env says it listens (SERVICE_BIND)
    until /healthz is 200 and /version says `version`."""
    return (
        "import json, os, sys, time, urllib.request\n"
        f"host, _, port = os.environ[{service.upper() + '_BIND'!r}].rpartition(':')\n"
        "base = 'http://%s:%s' % ('127.0.0.1' if host in ('', '0.0.0.0') else host, port)\n"
        f"deadline = time.time() + {seconds}\n"
        "last = 'no answer'\n"
        "while time.time() < deadline:\n"
        "    try:\n"
        "        urllib.request.urlopen(base + '/healthz', timeout=2)\n"
        "        got = json.load(urllib.request.urlopen(base + '/version', timeout=2))\n"
        f"        if got.get('version') == {version!r}:\n"
        "            sys.exit(0)\n"
        "        last = 'version ' + str(got.get('version'))\n"
        "    except Exception as exc:\n"
        "        last = str(exc)\n"
        "    time.sleep(0.2)\n"
        f"sys.exit('not healthy at %s after {seconds} s: %s' % (base, last))\n"
    )


def wait_healthy(service: str, version: str, seconds: int = 60) -> str:
    return as_service(service, f"python3 -c {shlex.quote(health_script(service, version, seconds))}")


def prune(service: str, keep: int = KEEP_RELEASES) -> str:
    """Remove all but the newest `keep` releases, never the one `current` points at."""
    releases = f"{base(service)}/releases"
    return (f"cd {releases} && cur=$(basename \"$(readlink -f {base(service)}/current)\") && "
            f"ls -1t | grep -v -x -e \"$cur\" -e '.*\\.unpacking' -e '\\.incoming-.*' | tail -n +{keep} "
            f"| xargs -r rm -rf --")
