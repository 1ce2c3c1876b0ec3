"""Filter: the members of groups, from `getent group` lines, as (group, member) pairs."""

from __future__ import annotations


def group_members(lines: list[str], keep: list[str]) -> list[list[str]]:
    """[group, member] for every member listed in `name:x:gid:a,b` lines, except those in `keep`."""
    pairs = []
    for line in lines:
        name, _, _, members = [*line.strip().split(":"), "", "", ""][:4]
        pairs += [[name, member] for member in members.split(",") if member and member not in keep]
    return pairs


class FilterModule:
    """Filters of the ami_hardening_sudo role."""

    def filters(self) -> dict:
        return {"ami_hardening_group_members": group_members}
