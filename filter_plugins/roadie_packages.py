"""roadie's package check, shared by every role (ansible.cfg: filter_plugins = filter_plugins).

Opening apt's cache costs about a second of CPU per host, dpkg-query milliseconds:
the roles ask dpkg which of their packages are missing and run apt only then.

    - name: Look for missing packages
      ansible.builtin.command:
        argv: "{{ ROLE_packages | roadie_dpkg_query }}"
      register: _ROLE_dpkg
      changed_when: false
      failed_when: false
      check_mode: false

    - name: Install packages
      ansible.builtin.apt: ...
      when: _ROLE_dpkg | roadie_missing_packages(ROLE_packages) | length > 0
"""

from __future__ import annotations

# One line per package: "ii  nginx" when installed; dpkg-query exits 1 and names
# unknown packages on stderr only, so a package without an "ii" line is missing.
_FORMAT = "${db:Status-Abbrev} ${Package}\n"


def roadie_dpkg_query(packages: list[str]) -> list[str]:
    """The argv that reports the install state of PACKAGES."""
    return ["dpkg-query", "-W", "-f", _FORMAT, *packages]


def _installed(stdout_lines: list[str]) -> set[str]:
    found = set()
    for line in stdout_lines:
        fields = line.split()
        if len(fields) == 2 and fields[0] == "ii":
            found.add(fields[1].split(":", 1)[0])  # nginx:amd64 -> nginx
    return found


def roadie_missing_packages(result: dict, packages: list[str]) -> list[str]:
    """PACKAGES that the registered result of roadie_dpkg_query does not show installed.

    An absent result (the check skipped, e.g. by tags) means every package is missing:
    apt then decides, which is slower but never wrong.
    """
    installed = _installed((result or {}).get("stdout_lines") or [])
    return [name for name in packages if name not in installed]


class FilterModule:
    def filters(self):
        return {"roadie_dpkg_query": roadie_dpkg_query, "roadie_missing_packages": roadie_missing_packages}
