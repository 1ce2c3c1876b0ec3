"""Vector sudo: effective grants, sudo policy, cloud-init's default-user rule, pkexec, SSM, root-equivalent
groups."""

import jinja2
import pytest
import yaml

from hardening.apply import PLAYBOOKS
from hardening.facts import polkit_order, polkit_services


def _grants_sudo(value) -> bool:
    """Whether a cloud-init `sudo:` value writes a sudoers rule."""
    if value is None or value is False or value == [] or value == "":
        return False
    return str(value).strip().lower() not in ("false", "no", "off", "0", "none")

# The sudo role's documented defaults and its template are the one definition of what it writes.
_ROLE = PLAYBOOKS / "roles" / "ami_hardening_sudo"
_DEFAULTS = yaml.safe_load((_ROLE / "defaults" / "main.yml").read_text())
_VARS = yaml.safe_load((_ROLE / "vars" / "main.yml").read_text())
ROOT_GROUPS = tuple(_DEFAULTS["ami_hardening_sudo_root_groups"])
NO_LOGIN_SHELLS = frozenset(_DEFAULTS["ami_hardening_sudo_polkit_no_login_shells"])
_POLKIT_FILE = _VARS["ami_hardening_sudo_polkit_file"]
_POLKIT_TEMPLATE = jinja2.Environment(autoescape=False).from_string(
    (_ROLE / "templates" / "polkit.rules.j2").read_text())


@pytest.mark.control("SUDO-01")
def test_only_admin_has_sudo(facts, profile, admin_user, offline, evidence):
    if not facts.sudo_installed:
        message = evidence("sudo is not installed: nobody has a sudo grant")
        assert profile == "sealed", message + " (marketplace needs the admin to administer through sudo)"
        return
    broken = {user: listing.error for user, listing in facts.sudo.items() if listing.error}
    granted = {user: listing.grants for user, listing in facts.sudo.items() if listing.grants and user != "root"}
    allowed = {admin_user} if admin_user else set()
    problems = [f"sudo -l -U {user}: {error}" for user, error in broken.items()]
    problems += [f"{user} may run {', '.join(grants)}"
                 for user, grants in sorted(granted.items()) if user not in allowed]
    notes = []
    if admin_user and admin_user not in granted:
        missing = (f"{admin_user} has no sudo grant" if admin_user in facts.accounts
                   else f"user {admin_user} does not exist")
        if offline:
            notes.append(f"{missing} yet (cloud-init sets up the default user on first boot)")
        else:
            problems.append(f"{missing}: marketplace needs the admin to administer through sudo")
    elif admin_user:
        notes.append(f"{admin_user} may run {', '.join(granted[admin_user])}")
    holders = ", ".join(sorted(granted)) or "nobody"
    message = evidence("; ".join(problems) if problems else
                       f"sudo -l -U for the {len(facts.sudo)} accounts sudoers can reach: grants for {holders} "
                       "(root aside)"
                       + ("; " + "; ".join(notes) if notes else ""))
    assert not problems, message


@pytest.mark.control("SUDO-02")
def test_sudo_uses_pty_and_logfile(facts, admin_user, evidence):
    user = admin_user if admin_user in facts.sudo and not facts.sudo[admin_user].error else "root"
    listing = facts.sudo.get(user)
    if listing is None or listing.error:
        pytest.fail(evidence(f"sudo -l -U {user} failed: {listing.error if listing else 'sudo not installed'}"))
    use_pty, logfile = False, None
    for item in listing.defaults:
        if item in ("use_pty", "!use_pty"):
            use_pty = item == "use_pty"
        elif item.startswith("logfile="):
            logfile = item.split("=", 1)[1].strip('"')
        elif item == "!logfile":
            logfile = None
    seen = f"sudo -l -U {user} Defaults: use_pty {'on' if use_pty else 'off'}, logfile {logfile or 'unset'}"
    message = evidence(seen + ("" if user == admin_user else f" (user {admin_user} does not exist yet)"))
    assert use_pty and logfile, message


def _groups(value) -> list[str]:
    """A cloud-init `groups:` value (list or comma-separated string) as group names."""
    if isinstance(value, str):
        value = value.split(",")
    return [str(group).strip() for group in value or [] if str(group).strip()]


@pytest.mark.control("SUDO-03")
def test_cloud_init_default_user_sudo(facts, profile, admin_user, as_image, evidence):
    if facts.cloud_source is None:
        evidence("cloud-init is not installed")
        return
    default_user = facts.cloud_value("system_info", "default_user", default={}) or {}
    users = facts.cloud_value("users", default=["default"]) or []
    entries = []
    if not isinstance(users, list) or "default" in users:
        entries.append((default_user.get("name", "the default user"), default_user,
                        lambda key: facts.cloud_origin("system_info", "default_user", key)))
    entries += [(entry.get("name", "?"), entry, lambda key: facts.cloud_origin("users"))
                for entry in (users if isinstance(users, list) else []) if isinstance(entry, dict)]
    grants = []
    for name, entry, origin in entries:
        if _grants_sudo(entry.get("sudo")):
            grants.append((name, f"sudo {entry['sudo']!r} ({origin('sudo')})"))
        grants += [(name, f"group {group} ({origin('groups')}; {rules[0]})") for group in _groups(entry.get("groups"))
                   for rules in [facts.sudoers_group_rules.get(group)] if rules]
    # The admin's sudo from cloud-init is the admin's grant by another file; judged as the image must be
    # (as apply checks first), no rule at all: the admin's grant is the roles' own, whatever cloud-init says.
    wrong = [f"{name} gets {how}" for name, how in grants if as_image or name != admin_user]
    message = evidence("merged cloud-init config: "
                       + ("; ".join(wrong) if wrong else
                          "; ".join(f"{name} gets {how}" for name, how in grants)
                          or "no sudo rule or sudo group for the default user or any listed user"))
    assert not wrong, message


@pytest.mark.control("SUDO-04")
def test_polkit_answers_first(facts, profile, admin_user, evidence):
    problems, notes = [], []
    if facts.pkexec is not None:
        mode, owner, path = facts.pkexec
        if not int(mode, 8) & 0o4000:
            notes.append(f"{path} is mode {mode}: not setuid")
        elif profile == "sealed":
            problems.append(f"{path} is setuid {owner} (mode {mode}): sealed needs the setuid bit removed")
    order = polkit_order(facts.polkit_rules)
    if facts.polkitd is None:
        notes.append(f"polkit is not installed (no polkitd; {len(order)} rules files from other packages)")
    elif not order:
        notes.append(f"{facts.polkitd} reads no rules file: the actions' own defaults decide, root the only admin")
    else:
        first = order[0]
        text = facts.polkit_rules[first]
        services = polkit_services(text)
        expected = _POLKIT_TEMPLATE.render(ami_hardening_profile=profile, ami_hardening_admin_user=admin_user,
                                           __ami_hardening_polkit_services=services or [])
        if first != _POLKIT_FILE:
            later = f", before {_POLKIT_FILE}" if _POLKIT_FILE in order else f"; {_POLKIT_FILE} is missing"
            problems.append(f"polkit runs {first} first{later}: any rule there may answer YES (root without sudo)")
        elif services is None or text.strip() != expected.strip():
            problems.append(f"polkit runs {first} first, and it is not the file apply writes: its rules may "
                            "answer YES (root without sudo)")
        else:
            logins = [user for user in services
                      if user == "root" or facts.accounts.get(user, {}).get("shell") not in NO_LOGIN_SHELLS]
            if logins:
                problems.append(f"{first} lets {', '.join(logins)} reach later rules, yet they can log in")
            identity = admin_user if profile == "marketplace" else "root"
            notes.append(f"polkit runs {first} first: every account but root and {len(services)} that cannot "
                         f"log in needs unix-user:{identity} to authenticate")
    message = evidence("; ".join(problems + notes))
    assert not problems, message


@pytest.mark.control("SUDO-05")
def test_ssm_agent_disabled(facts, evidence):
    # Masked, not just disabled: an upgrade of the agent's package enables a disabled unit again.
    unmasked = [f"{unit} is {state}, not masked" for unit, state in facts.ssm_units.items()
                if state.split()[0] != "masked"]
    problems = unmasked + [f"{path} exists (ssm-user sudo rule)" for path in facts.ssm_sudoers]
    message = evidence("; ".join(problems) or "every amazon-ssm-agent unit is masked (or absent); "
                                               "no ssm-user sudoers rule")
    assert not problems, message




@pytest.mark.control("SUDO-06")
def test_no_account_in_root_equivalent_groups(facts, admin_user, evidence):
    # Under marketplace the admin has root through sudo already; a membership adds nothing there.
    allowed = {"root", *([admin_user] if admin_user else [])}
    found = {group: sorted(facts.groups[group][1] - allowed) for group in ROOT_GROUPS if group in facts.groups}
    found = {group: members for group, members in found.items() if members}
    present = [group for group in ROOT_GROUPS if group in facts.groups]
    message = evidence("root by another name: " + "; ".join(f"{g}: {', '.join(m)}" for g, m in found.items())
                       if found else f"no account but {' and '.join(sorted(allowed))} in "
                                     f"{', '.join(present) or 'any of ' + ', '.join(ROOT_GROUPS)}")
    assert not found, message
