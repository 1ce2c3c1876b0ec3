"""The roles as an Ansible collection, ami_hardening.lockdown, for playbooks that use them without this
Python package: staged from playbooks/ and built with `ansible-galaxy collection build`.

The collection holds the roles, the playbooks `harden` and `seal`, the roles' module and filters, and
the chroot connection (`ami_hardening.lockdown.ami_hardening_chroot`) for hardening a mounted root
offline.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from hardening import __version__
from hardening.apply import PLAYBOOKS, require_ansible
from hardening.errors import HardeningError

NAMESPACE, NAME = "ami_hardening", "lockdown"
README = """# ami_hardening.lockdown

The roles of ami-hardening: lock down an AMI against root login, sudo, user-data and label-based boot.

    ansible-playbook -i inventory ami_hardening.lockdown.harden -e ami_hardening_admin_user=admin

Each control sits behind an `ami_hardening_*_enabled` switch documented in the role's
`meta/argument_specs.yml`. `ami_hardening.lockdown.ami_hardening_chroot` runs tasks in a mounted
root filesystem (set `ami_hardening_offline: true` then).
"""


def stage(dest: Path) -> Path:
    """Lay the collection out under `dest` (NAMESPACE/NAME) and return its root."""
    root = dest / NAMESPACE / NAME
    # A collection's roles cannot lend the plugins they embed (a module in one role's library/, used by
    # the roles that depend on it): those move to the collection's plugins/, where every role finds them.
    embedded = {"library": "modules", "filter_plugins": "filter"}
    shutil.copytree(PLAYBOOKS / "roles", root / "roles",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *embedded))
    moved = [(PLAYBOOKS / "connection_plugins", "connection"),
             *((role / directory, kind) for role in sorted((PLAYBOOKS / "roles").iterdir())
               for directory, kind in embedded.items())]
    for source, kind in moved:
        for plugin in sorted(source.glob("*.py")):
            (root / "plugins" / kind).mkdir(parents=True, exist_ok=True)
            shutil.copy2(plugin, root / "plugins" / kind / plugin.name)
    # A filter from a collection is known by its full name only.
    filters = {name for plugin in (root / "plugins" / "filter").glob("*.py")
               for name in re.findall(r'"(ami_hardening_\w+)":', plugin.read_text())}
    pattern = re.compile(r"\|\s*(" + "|".join(sorted(filters)) + r")\b")
    for path in (root / "roles").rglob("*"):
        if path.suffix in (".yml", ".j2") and pattern.search(text := path.read_text()):
            path.write_text(pattern.sub(rf"| {NAMESPACE}.{NAME}.\1", text))
    (root / "playbooks").mkdir()
    for playbook in ("harden.yml", "seal.yml"):
        shutil.copy2(PLAYBOOKS / playbook, root / "playbooks" / playbook)
    (root / "meta").mkdir()
    (root / "meta" / "runtime.yml").write_text("---\nrequires_ansible: '>=2.16'\n")
    (root / "README.md").write_text(README)
    galaxy = {"namespace": NAMESPACE, "name": NAME, "version": __version__, "readme": "README.md",
              "authors": ["ami-hardening maintainers"], "license": ["Apache-2.0"],
              "description": "Lock down an AMI against root login, sudo, user-data and label-based boot",
              "tags": ["security", "hardening", "aws", "ami"], "dependencies": {}}
    (root / "galaxy.yml").write_text(yaml.safe_dump(galaxy, sort_keys=False))
    return root


def build(output: Path) -> Path:
    """Build the collection's tarball into `output` with ansible-galaxy and return its path."""
    require_ansible()
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ami-harden-collection-") as work:
        root = stage(Path(work))
        result = subprocess.run(["ansible-galaxy", "collection", "build", str(root), "--output-path", str(output),
                                 "--force"], capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise HardeningError(f"ansible-galaxy collection build failed: {(result.stderr or result.stdout).strip()}")
    return output / f"{NAMESPACE}-{NAME}-{__version__}.tar.gz"
