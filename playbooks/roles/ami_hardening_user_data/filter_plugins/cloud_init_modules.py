"""Filter: cloud-init's effective module lists without the deny-listed modules."""

from __future__ import annotations

LISTS = ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules")


def _name(entry) -> str:
    """A module entry's name: entries are `name` or `[name, frequency, ...]`; `cc_`/dashes are optional."""
    raw = entry[0] if isinstance(entry, list) else entry
    return str(raw).replace("-", "_").removeprefix("cc_")


def module_lists(configs, denylist) -> dict:
    """Merge configs (lowest priority first) the way cloud-init does for whole lists, then filter."""
    deny = {str(name).replace("-", "_") for name in denylist}
    merged: dict = {}
    for config in configs:
        for key in LISTS:
            if isinstance(config, dict) and isinstance(config.get(key), list):
                merged[key] = config[key]
    return {key: [entry for entry in merged.get(key, []) if _name(entry) not in deny] for key in LISTS}


class FilterModule:
    """Filters of the ami_hardening_user_data role."""

    def filters(self) -> dict:
        return {"ami_hardening_module_lists": module_lists}
