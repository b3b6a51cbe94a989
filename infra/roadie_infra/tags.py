"""The tags every taggable resource carries; the aws_ec2 inventories key on them."""

from __future__ import annotations

REQUIRED = ("roadie:env", "roadie:role", "roadie:service", "owner")

def tags(settings, role: str, service: str, name: str | None = None, **extra: str) -> dict[str, str]:
    out = {"roadie:env": settings.environment, "roadie:role": role, "roadie:service": service,
           "owner": settings.owner}
    if name:
        out["Name"] = name
    out.update(extra)
    return out


def asg_tags(tag_map: dict[str, str]) -> list[dict]:
    """Auto scaling groups take tags as a list, copied onto the instances they launch."""
    return [{"key": k, "value": v, "propagate_at_launch": True} for k, v in sorted(tag_map.items())]
