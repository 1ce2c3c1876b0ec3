"""Vector root-login: nobody logs in as root, by SSH, password, key, cloud-init or console."""

import pytest

_CLOUD_INIT_BLOCK = "Please login as the user"


def _setting(facts, keyword: str, who: str = "") -> str:
    """`keyword value (set by file:line)` as `sshd -T` reports it."""
    value = facts.sshd(who).get(keyword, "?")
    origin = facts.sshd_origin(keyword)
    return f"{keyword} {value}" + (f" (set by {origin})" if origin else " (sshd default)")


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
    message = evidence(f"sshd -T (global and for user root): {_setting(facts, 'permitrootlogin', 'root')}")
    assert values == {"no"}, message


@pytest.mark.control("ROOT-02")
def test_sshd_refuses_passwords(facts, evidence):
    if _sshd_absent(facts, evidence, ": no SSH password login"):
        return
    keywords = ("passwordauthentication", "kbdinteractiveauthentication", "permitemptypasswords")
    who = ["", "root"] + ([facts.admin_user] if facts.admin_user else [])
    wrong = sorted({_setting(facts, k, w) for k in keywords for w in who if facts.sshd(w).get(k) != "no"})
    message = evidence("sshd -T: " + ("; ".join(wrong) if wrong else " ".join(f"{k} no" for k in keywords)))
    assert not wrong, message


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
def test_root_has_no_authorized_keys(facts, offline, evidence):
    found, blocked = {}, 0
    for path, lines in facts.root_keys.items():
        # Live, cloud-init's disable_root leaves the launch key for root behind a forced command that
        # only prints "Please login as the user ..." and exits; an image must hold no key at all.
        usable = [line for line in lines if offline or 'command="' not in line or _CLOUD_INIT_BLOCK not in line]
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
def test_no_autologin_getty(facts, evidence):
    lines = facts.autologin_lines
    message = evidence("autologin getty: " + "; ".join(lines) if lines
                       else "no getty unit or drop-in uses --autologin")
    assert not lines, message


@pytest.mark.control("ROOT-07")
def test_no_authorized_keys_command(facts, evidence):
    if _sshd_absent(facts, evidence, ""):
        return
    value = facts.sshd("root").get("authorizedkeyscommand", "none")
    problems = [] if value == "none" else [f"sshd -T: {_setting(facts, 'authorizedkeyscommand', 'root')}"]
    problems += [f"sshd started with it: {line}" for line in facts.sshd_unit_commands]
    message = evidence("; ".join(problems) or "sshd -T: authorizedkeyscommand none; no unit passes one")
    assert not problems, message
