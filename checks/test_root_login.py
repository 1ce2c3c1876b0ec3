"""Vector root-login: nobody logs in as root, by SSH, password, key, cloud-init, console or boot loader."""

import fnmatch
import importlib.util
import re

import pytest
import yaml

from hardening.apply import PLAYBOOKS

_CLOUD_INIT_BLOCK = "Please login as the user"
# The root-login role's definitions are the checks' too: what a password-less getty looks like, and
# what a locked, hidden boot menu is (the filter the role asserts grub.cfg with), what guards emergency mode.
_ROLE = PLAYBOOKS / "roles" / "ami_hardening_root_login"
_VARS = yaml.safe_load((_ROLE / "vars" / "main.yml").read_text())
_GETTY_SHELL = re.compile(_VARS["ami_hardening_root_login_getty_shell_regexp"])
_GRUB_SUPERUSER = _VARS["ami_hardening_root_login_grub_superuser"]


def _filters(name: str):
    """One of the role's filter plugins, as a module."""
    spec = importlib.util.spec_from_file_location(f"ami_hardening_{name}", _ROLE / "filter_plugins" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_grub_menu = _filters("grub_menu")
_sulogin = _filters("sulogin")


def _setting(facts, keyword: str, who: str = "") -> str:
    """`keyword value (set by file:line)` as `sshd -T` reports it."""
    value = facts.sshd(who).get(keyword, "?")
    origin = facts.sshd_origin(keyword)
    return f"{keyword} {value}" + (f" (set by {origin})" if origin else " (sshd default)")


def _in_match_blocks(facts, keyword: str, allowed: str, for_root: bool = False) -> list[str]:
    """Match blocks that set `keyword` to anything but `allowed` (`sshd -T -C` saw only the connections
    it was asked about); with `for_root`, blocks that select users other than root are left out."""
    found = []
    for where, match, value in facts.sshd_match_settings(keyword):
        if value.lower() == allowed or (for_root and not _may_select_root(match)):
            continue
        found.append(f"{where}: {keyword} {value} inside '{match}'")
    return found


def _may_select_root(match: str) -> bool:
    """Whether a Match line can select a login as root (only `Match User` lists without root cannot)."""
    words = match.split()[1:]
    if len(words) != 2 or words[0].lower() != "user":
        return True
    patterns = words[1].split(",")
    return any(p.startswith("!") or fnmatch.fnmatch("root", p) for p in patterns)


def _sshd_absent(facts, evidence, why: str) -> bool:
    """True (with evidence) when sshd is not installed; fail when sshd -T cannot tell its configuration."""
    if not facts.sshd_installed:
        evidence(f"sshd is not installed{why}")
        return True
    if facts.sshd_error():
        pytest.fail(evidence(f"sshd -T failed: {facts.sshd_error()}"))
    return False


@pytest.mark.control("ROOT-01")
def test_sshd_refuses_root(facts, evidence):
    if _sshd_absent(facts, evidence, ": no SSH root login"):
        return
    values = {facts.sshd().get("permitrootlogin"), facts.sshd("root").get("permitrootlogin")}
    matched = _in_match_blocks(facts, "permitrootlogin", "no", for_root=True)
    message = evidence("; ".join([f"sshd -T (global and for user root): {_setting(facts, 'permitrootlogin', 'root')}",
                                  *matched]))
    assert values == {"no"} and not matched, message


@pytest.mark.control("ROOT-02")
def test_sshd_refuses_passwords(facts, evidence):
    if _sshd_absent(facts, evidence, ": no SSH password login"):
        return
    keywords = ("passwordauthentication", "kbdinteractiveauthentication", "permitemptypasswords")
    who = ["", "root"] + ([facts.admin_user] if facts.admin_user else [])
    wrong = sorted({_setting(facts, k, w) for k in keywords for w in who if facts.sshd(w).get(k) != "no"})
    matched = [found for k in keywords for found in _in_match_blocks(facts, k, "no")]
    message = evidence("; ".join(["sshd -T: " + ("; ".join(wrong) if wrong else " ".join(f"{k} no" for k in keywords)),
                                  *matched]))
    assert not wrong and not matched, message


@pytest.mark.control("ROOT-03")
def test_no_usable_password(facts, evidence):
    states = facts.password_states
    problems = []
    if states.get("root") != "locked":
        problems.append(f"root password is {states.get('root', 'missing from /etc/shadow')} (passwd -S: not L)")
    usable = sorted(user for user, state in states.items() if state in ("hash", "empty") and user != "root")
    if usable:
        problems.append("accounts with a usable password: "
                        + ", ".join(f"{user} ({states[user]})" for user in usable))
    message = evidence("; ".join(problems) if problems
                       else f"/etc/shadow: root locked; none of {len(states)} accounts has a usable password")
    assert not problems, message


def _key_label(line: str) -> str:
    """`type comment` of an authorized_keys line (options skipped, key material left out)."""
    words = line.split()
    start = next((i for i, word in enumerate(words) if word.startswith(("ssh-", "ecdsa-", "sk-"))), 0)
    return " ".join(words[start:start + 1] + words[start + 2:start + 3])


@pytest.mark.control("ROOT-04")
def test_root_has_no_authorized_keys(facts, offline, as_image, evidence):
    found, blocked = {}, 0
    strict = offline or as_image
    for path, lines in facts.root_keys.items():
        # Live, cloud-init's disable_root leaves the launch key for root behind a forced command that
        # only prints "Please login as the user ..." and exits; an image must hold no key at all.
        usable = [line for line in lines if strict or 'command="' not in line or _CLOUD_INIT_BLOCK not in line]
        blocked += len(lines) - len(usable)
        if usable:
            found[path] = usable
    described = "; ".join(f"{path}: {len(lines)} key(s), first {_key_label(lines[0])}" for path, lines in found.items())
    note = f" ({blocked} key(s) blocked by cloud-init disable_root's forced command)" if blocked else ""
    message = evidence((described or "root has no usable authorized key in any AuthorizedKeysFile") + note)
    assert not found, message


@pytest.mark.control("ROOT-05")
def test_cloud_init_disables_root(facts, evidence):
    if facts.cloud_source is None:
        evidence("cloud-init is not installed")
        return
    value = facts.cloud_value("disable_root")
    shown = ("absent (cloud-init default: true)" if value is None
             else f"{value!r} ({facts.cloud_origin('disable_root')})")
    message = evidence(f"merged cloud-init config: disable_root {shown}")
    value = True if value is None else value
    assert value is True or str(value).lower() in ("true", "1", "on", "yes"), message


@pytest.mark.control("ROOT-06")
def test_no_getty_without_login(facts, evidence):
    lines = [line for line in facts.getty_lines if _GETTY_SHELL.search(line.split(":", 2)[-1])]
    problems = [f"getty without a password: {line}" for line in lines]
    if facts.debug_shell.startswith("enabled"):
        problems.append(f"debug-shell.service is {facts.debug_shell} (a root shell on tty9)")
    elif facts.debug_shell not in ("masked", "not-found") and not facts.debug_shell.startswith("Failed"):
        problems.append(f"debug-shell.service is {facts.debug_shell}, not masked: systemd.debug_shell on the "
                        f"kernel command line starts it (a root shell on tty9)")
    units = facts.sulogin_units
    if units is None:
        problems.append("emergency and rescue mode's units were not gathered")
    else:
        problems += _sulogin.sulogin_problems(units, _VARS["ami_hardening_root_login_sulogin_units"])
    message = evidence("; ".join(problems) if problems else
                       f"none of {len(facts.getty_lines)} getty/console ExecStart lines logs in without a password; "
                       f"emergency and rescue mode run sulogin with {_sulogin.FORCE} unset; "
                       f"debug-shell.service {facts.debug_shell}")
    assert not problems, message


@pytest.mark.control("ROOT-07")
def test_no_authorized_keys_command(facts, evidence):
    if _sshd_absent(facts, evidence, ""):
        return
    value = facts.sshd("root").get("authorizedkeyscommand", "none")
    problems = [] if value == "none" else [f"sshd -T: {_setting(facts, 'authorizedkeyscommand', 'root')}"]
    problems += [f"sshd started with it: {line}" for line in facts.sshd_unit_commands]
    problems += _in_match_blocks(facts, "authorizedkeyscommand", "none")
    message = evidence("; ".join(problems) or "sshd -T: authorizedkeyscommand none; no unit passes one")
    assert not problems, message


def _menus(facts) -> dict[str, str]:
    """Each grub.cfg that has menu entries (the ESP's stub has none), as the lines gathered from it."""
    found = {}
    for path, lines in facts.grub_cfg.items():
        text = "\n".join(line.partition(":")[2] for line in lines)
        if re.search(r"^\s*menuentry\s", text, re.M):
            found[path] = text
    return found


def _menu_verdict(facts, evidence, superuser: str | None, hidden: bool, fine: str) -> None:
    menus = _menus(facts)
    if not menus and facts.bls_options:
        pytest.skip("BLS entries only: judged from grub.cfg's menu, which has none here")
    problems = [f"{path}: {problem}" for path, text in menus.items()
                for problem in _grub_menu.menu_problems(text, superuser, hidden)]
    if not menus:
        problems.append("no grub.cfg with menu entries found")
    message = evidence("; ".join(problems) if problems else f"{', '.join(menus)}: {fine}")
    assert not problems, message


@pytest.mark.control("ROOT-08")
def test_boot_loader_editor_needs_a_superuser(facts, evidence):
    superuser = "root" if any("/grub2/" in path for path in _menus(facts)) else _GRUB_SUPERUSER
    _menu_verdict(facts, evidence, superuser, hidden=False,
                  fine=f"the menu editor and command line need superuser {superuser!r} (PBKDF2 password); "
                       "the default entry boots unattended (--unrestricted)")


@pytest.mark.control("ROOT-09")
def test_boot_menu_hidden_without_timeout(facts, evidence):
    _menu_verdict(facts, evidence, None, hidden=True, fine="every timeout is 0, also after an unclean stop")


@pytest.mark.control("ROOT-10")
def test_no_other_account_has_authorized_keys(facts, evidence):
    allowed = {"root", *([facts.admin_user] if facts.admin_user else [])}
    found = {user: files for user, files in facts.account_keys.items()
             if user not in allowed and any(lines for lines in files.values())}
    described = "; ".join(f"{user}: {path} ({len(lines)} key(s))" for user, files in sorted(found.items())
                          for path, lines in files.items() if lines)
    keeper = f"the admin {facts.admin_user!r}" if facts.admin_user else "nobody (no admin named)"
    message = evidence(f"pre-seeded keys of other accounts: {described}" if found else
                       f"no account but root (ROOT-04) and {keeper} has an authorized key")
    assert not found, message


@pytest.mark.control("ROOT-11")
def test_initramfs_never_opens_a_shell(facts, evidence):
    carried, said = facts.initramfs_carries("ami-no-shell", ": a boot that cannot find root reboots",
                                            ": a boot that cannot find root opens a root shell on the console")
    message = evidence(said)
    assert carried, message
