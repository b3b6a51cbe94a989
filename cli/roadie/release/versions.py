"""Release versions are semantic versions; anything else is refused before any work."""

from __future__ import annotations

import semver

from roadie.errors import BadInput


def parse(text: str) -> semver.Version:
    """`1.4.2` or `1.5.0-rc.1`; a `v` prefix, two parts, leading zeros or `+build` are bad input."""
    try:
        version = semver.Version.parse(text)
    except (ValueError, TypeError):
        raise BadInput(f"'{text}' is not a semantic version: use MAJOR.MINOR.PATCH, "
                       "e.g. 1.4.2 or 1.5.0-rc.1.") from None
    if version.build:
        # Build metadata does not order versions, so 1.0.0+a and 1.0.0+b would be
        # two "different" releases of equal rank; and '+' is awkward in S3 keys.
        raise BadInput(f"'{text}' has build metadata (+{version.build}); release versions may not: "
                       "use a pre-release such as 1.5.0-rc.1 instead.")
    return version


def sort_key(text: str):
    """Order version strings by SemVer precedence (1.5.0-rc.1 < 1.5.0 < 1.10.0)."""
    return semver.Version.parse(text)
