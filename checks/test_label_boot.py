"""Vector label-boot: a decoy volume carrying the root's label must not become /."""

import pytest

from hardening.kernel import root_argument

_OFFLINE = "offline: no running kernel, judged the boot configuration"
_BY_ID = ("UUID=", "PARTUUID=", "/dev/disk/by-uuid/", "/dev/disk/by-partuuid/")


@pytest.mark.control("LABEL-01")
def test_root_found_by_uuid(facts, evidence):
    problems, checked = [], []
    if facts.cmdline is not None:
        root = root_argument(facts.cmdline)
        checked.append(f"/proc/cmdline root={root}")
        if not root or not root.startswith(("UUID=", "PARTUUID=")):
            problems.append(f"/proc/cmdline: root={root or '(none)'}")
    entries = {**facts.grub_cfg, **facts.bls_options}
    for path, lines in entries.items():
        for line in lines:
            number, _, text = line.partition(":")
            if not text.split() or text.split()[0] not in ("linux", "linux16", "linuxefi", "options"):
                continue
            root = root_argument(text)
            checked.append(f"{path}:{number}")
            if not root or not root.startswith(("UUID=", "PARTUUID=")):
                problems.append(f"{path}:{number}: root={root or '(none)'}")
    if not entries:
        problems.append("no grub.cfg or BLS entry found: cannot tell how the next boot finds root")
    where = "" if facts.cmdline is not None else f" ({_OFFLINE})"
    message = evidence("root found by label or device path: " + "; ".join(problems) + where if problems
                       else f"root=UUID/PARTUUID in {len(checked)} places ({', '.join(checked[:3])}...)" + where)
    assert not problems, message


@pytest.mark.control("LABEL-02")
def test_fstab_root_by_uuid(facts, evidence):
    roots = [fields for fields in facts.fstab if fields[1] == "/"]
    if not roots:
        evidence("no / line in /etc/fstab: the root mount comes from the kernel command line (LABEL-01)")
        return
    spec = roots[-1][0]
    mounted = f"; mounted now: {facts.root_mount}" if facts.root_mount else ""
    message = evidence(f"/etc/fstab mounts / from {spec}{mounted}")
    assert spec.startswith(_BY_ID), message


@pytest.mark.control("LABEL-03")
def test_initramfs_refuses_ambiguous_root(facts, evidence):
    carried, said = facts.initramfs_carries("ami-root-unique", "", " check")
    message = evidence(said)
    assert carried, message


@pytest.mark.control("LABEL-04")
def test_grub_finds_boot_by_position(facts, evidence):
    searches = [f"{path}:{' '.join(line.split())}" for path, lines in facts.grub_cfg.items() for line in lines
                if line.partition(":")[2].split()[:1] and line.partition(":")[2].split()[0].startswith("search")]
    disable_uuid = facts.grub_defaults.get("GRUB_DISABLE_UUID") or "unset"
    if not facts.grub_cfg:
        pytest.fail(evidence("no grub.cfg found"))
    message = evidence(f"grub.cfg searches for a filesystem (GRUB_DISABLE_UUID={disable_uuid}): "
                       + "; ".join(searches[:3]) + (f" (+{len(searches) - 3} more)" if len(searches) > 3 else "")
                       if searches else
                       f"no search command in {', '.join(facts.grub_cfg)} (GRUB_DISABLE_UUID={disable_uuid})")
    assert not searches, message
