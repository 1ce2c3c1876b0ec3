"""Vector user-data: cloud-init must not run what a launcher passes in user-data or vendor-data."""

import re

import pytest
import yaml

from hardening.apply import PLAYBOOKS

# The user-data role's documented default is the one definition of the modules that execute, write
# or install what user-data (or vendor-data) asks for.
_ROLE_DEFAULTS = PLAYBOOKS / "roles" / "ami_hardening_user_data" / "defaults" / "main.yml"
_DEFAULTS = yaml.safe_load(_ROLE_DEFAULTS.read_text())
DENIED_MODULES = frozenset(_DEFAULTS["ami_hardening_user_data_module_denylist"])
PLATFORM_DATASOURCES = tuple(_DEFAULTS["ami_hardening_user_data_datasource_list"])
# A kernel argument whose URL cloud-init fetches into cloud.cfg.d (`url=` is its older name).
_CONFIG_URL = re.compile(r"(^|[\s\"'])(cloud-config-url|url)=\S+")
# Kernel arguments that choose a datasource whatever /etc/cloud says (ds-identify and NoCloud read them).
_DATASOURCE_ARGUMENT = re.compile(r"(^|[\s\"'])(ci\.ds|ci\.datasource|ds)=\S+")
_TRUE = ("true", "1", "on", "yes")
_FALSE = ("off", "0", "no", "false")


def _without_cloud_init(facts, evidence) -> bool:
    """True (with evidence) when cloud-init is not installed, so nothing runs user-data."""
    if facts.cloud_source is None:
        evidence("cloud-init is not installed: nothing runs user-data")
        return True
    return False


def _module_name(entry) -> str:
    name = entry[0] if isinstance(entry, list) and entry else entry
    name = str(name).strip().replace("-", "_")
    return name.removeprefix("cc_")


@pytest.mark.control("USER-01")
def test_userdata_not_allowed(facts, evidence):
    if _without_cloud_init(facts, evidence):
        return
    value = facts.cloud_value("allow_userdata")
    allowed = True if value is None else bool(value) and (value is True or str(value).lower().strip() in _TRUE)
    shown = ("absent (cloud-init default: true)" if value is None
             else f"{value!r} ({facts.cloud_origin('allow_userdata')})")
    message = evidence(f"merged cloud-init config: allow_userdata {shown}")
    assert not allowed, message


@pytest.mark.control("USER-02")
def test_vendor_data_disabled(facts, evidence):
    if _without_cloud_init(facts, evidence):
        return
    states = []
    for key in ("vendor_data", "vendor_data2"):
        setting = facts.cloud_value(key, default={"enabled": True})
        enabled = setting.get("enabled") if isinstance(setting, dict) else False
        on = enabled is True or (not isinstance(enabled, bool) and str(enabled).lower().strip() in _TRUE)
        origin = facts.cloud_origin(key, "enabled")
        shown = "absent (cloud-init default: true)" if origin == "set nowhere" else f"{enabled!r} ({origin})"
        states.append((key, shown, on))
    message = evidence("merged cloud-init config: " + "; ".join(f"{key}.enabled {shown}" for key, shown, _ in states))
    assert not any(on for *_, on in states), message


@pytest.mark.control("USER-03")
def test_no_user_data_modules(facts, evidence):
    if _without_cloud_init(facts, evidence):
        return
    found = []
    for stage in ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules"):
        entries = facts.cloud_value(stage, default=[]) or []
        denied = [_module_name(entry) for entry in entries if _module_name(entry) in DENIED_MODULES]
        if denied:
            found.append(f"{stage}: {', '.join(denied)} ({facts.cloud_origin(stage)})")
    message = evidence("merged cloud-init module lists still run " + "; ".join(found) if found
                       else "no module that executes, writes or installs from user-data is in any stage")
    assert not found, message


@pytest.mark.control("USER-04")
def test_ssh_pwauth_false(facts, evidence):
    if _without_cloud_init(facts, evidence):
        return
    value = facts.cloud_value("ssh_pwauth")
    off = value is False or (value is not None and str(value).lower().strip() in _FALSE)
    shown = ("absent (cloud-init leaves sshd's password setting alone)" if value is None
             else f"{value!r} ({facts.cloud_origin('ssh_pwauth')})")
    message = evidence(f"merged cloud-init config: ssh_pwauth {shown}")
    assert off, message


def _on_kernel_cmdline(facts, matches) -> tuple[list[str], str]:
    """Where the running and the configured kernel command lines hold what `matches` accepts, and
    which places were looked at."""
    found = []
    if facts.cmdline is not None and matches(facts.cmdline):
        found.append(f"/proc/cmdline: {facts.cmdline}")
    found += [f"/etc/default/grub: {line}" for line in facts.grub_default_lines if matches(line)]
    found += [f"{name} (after sourcing /etc/default/grub*) = {value}"
              for name, value in facts.grub_defaults.items() if name.startswith("GRUB_CMDLINE") and matches(value)]
    found += [f"{path}:{line.strip()}" for path, lines in {**facts.grub_cfg, **facts.bls_options}.items()
              for line in lines if matches(line)]
    where = "grub defaults and boot entries" + ("" if facts.cmdline is None else ", /proc/cmdline")
    if facts.cmdline is None:
        where += " (offline: no running kernel, judged the boot configuration)"
    return found, where


@pytest.mark.control("USER-05")
def test_no_cloud_config_on_kernel_cmdline(facts, evidence):
    found, where = _on_kernel_cmdline(facts, lambda text: "cc:" in text or bool(_CONFIG_URL.search(text)))
    message = evidence("cloud-config on the kernel command line: " + "; ".join(found) if found
                       else f"no cc: or cloud-config-url= in {where}")
    assert not found, message


@pytest.mark.control("USER-06")
def test_datasource_list_pinned(facts, evidence):
    if _without_cloud_init(facts, evidence):
        return
    value, origin = facts.configured_cloud_value("datasource_list")
    problems = []
    if value is None:
        problems.append("datasource_list is set nowhere in /etc/cloud: ds-identify keeps every datasource it "
                        "finds, volumes labelled config-2 or cidata included")
        listed = []
    else:
        listed = [str(item).strip() for item in value] if isinstance(value, list) else [str(value)]
        extra = [name for name in listed if name not in PLATFORM_DATASOURCES]
        if extra or not listed:
            problems.append(f"datasource_list {listed} ({origin}) reads {', '.join(extra) or 'nothing'}, "
                            f"not only the platform's {list(PLATFORM_DATASOURCES)}")
    chosen, _ = _on_kernel_cmdline(facts, lambda text: bool(_DATASOURCE_ARGUMENT.search(text)))
    problems += [f"a datasource chosen on the kernel command line: {line}" for line in chosen]
    message = evidence("; ".join(problems) if problems else f"datasource_list {listed} ({origin})")
    assert not problems, message
