"""The roles as the Ansible collection ami_hardening.lockdown: built with ansible-galaxy, installed into a
collections path of its own, and its `harden` playbook run through its own chroot connection against
a copy of the traps image, offline, without this package's apply; the copy then passes `check`."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest
import yaml

from hardening import collection
from hardening.check import run_checks
from hardening.disk import chroot_root, overlay
from hardening.lab.image import VARIANTS
from hardening.target import Image

ADMIN = VARIANTS["traps"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("collection")
    tarball = collection.build(work / "dist")
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["name"] == collection.NAME
    subprocess.run(["ansible-galaxy", "collection", "install", str(tarball), "-p", str(work / "collections")],
                   capture_output=True, text=True, timeout=300, check=True)
    return work / "collections"


def test_the_collection_holds_the_roles_playbooks_and_connection(installed):
    root = installed / "ansible_collections" / collection.NAMESPACE / collection.NAME
    assert {path.name for path in (root / "roles").iterdir()} >= {"ami_hardening_preflight", "ami_hardening_sudo"}
    assert (root / "playbooks" / "harden.yml").is_file()
    assert (root / "plugins" / "connection" / "ami_hardening_chroot.py").is_file()


@pytest.mark.vm
@pytest.mark.skipif(os.geteuid() != 0, reason="the image is mounted and hardened through chroot, as root")
def test_a_playbook_using_the_collection_hardens_the_traps_image(installed, traps_image, tmp_path):
    copy = overlay(traps_image, tmp_path / "copy.qcow2")
    fqcn = f"{collection.NAMESPACE}.{collection.NAME}"
    (tmp_path / "site.yml").write_text(f"---\n- name: Harden with the collection\n  ansible.builtin.import_playbook: "
                                       f"{fqcn}.harden\n")
    variables = {"ami_hardening_profile": "marketplace", "ami_hardening_admin_user": ADMIN,
                 "ami_hardening_offline": True}
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_HOST_KEY_CHECKING": "False",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PIPELINING": "True"}
    with chroot_root(copy) as mounted:
        host = {**Image.chroot_inventory(mounted.root)["all"]["hosts"]["image"],
                "ansible_connection": f"{fqcn}.ami_hardening_chroot"}
        (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"image": host}}}))
        result = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), "-e",
                                 json.dumps(variables), str(tmp_path / "site.yml")], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=900, check=False)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "failed=0" in result.stdout
        report = run_checks(mounted.root, admin_user=ADMIN)
        mounted.keep = False
    assert report.passed, {r.control: r.evidence for r in report.results if r.control in report.failing()}
