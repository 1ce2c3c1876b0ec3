"""Run tasks inside a mounted root filesystem through chroot(8), on the host's CPU.

Used by `ami-harden apply IMAGE`. ansible-core ships no chroot connection and Galaxy's
community.general (which has one) is not installable from PyPI on its own, so the few lines
needed live here: every command is `chroot ROOT /bin/sh -c CMD` with a fixed PATH and locale,
and files move through `dd` and `cat` inside the chroot, so a symlink in the image resolves
within the image and never to a path on the host.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: ami_hardening_chroot
short_description: Run tasks in a mounted root filesystem with chroot
description:
  - Runs each command as root with C(chroot ROOT /bin/sh -c CMD); the host must run Ansible as root.
options:
  remote_addr:
    description: Path of the mounted root filesystem.
    type: string
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
"""

ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/root"}
BUFSIZE = 65536


class Connection(ConnectionBase):
    """chroot into the root named by ansible_host."""

    transport = "ami_hardening_chroot"
    has_pipelining = True
    has_tty = False
    default_user = "root"

    def _root(self) -> str:
        root = self.get_option("remote_addr")
        if not os.path.isfile(os.path.join(root, "bin", "sh")):
            raise AnsibleConnectionFailure(f"{root} holds no system root (no /bin/sh)")
        return root

    def _connect(self) -> Connection:
        if os.geteuid() != 0:
            raise AnsibleConnectionFailure("the chroot connection needs root on the host")
        self._root()
        self._connected = True
        return self

    def _chroot(self, command: str, stdin: int | None = subprocess.PIPE,
                stdout: int = subprocess.PIPE) -> subprocess.Popen:
        return subprocess.Popen(["chroot", self._root(), "/bin/sh", "-c", command], stdin=stdin,
                                stdout=stdout, stderr=subprocess.PIPE, env=ENVIRONMENT, cwd="/")

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = False):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        process = self._chroot(cmd)
        stdout, stderr = process.communicate(in_data)
        return process.returncode, stdout, stderr

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            process = self._chroot(f"dd of={shlex.quote(out_path)} bs={BUFSIZE} status=none", stdin=source)
            _, stderr = process.communicate()
        if process.returncode != 0:
            raise AnsibleError(f"could not write {out_path} in the chroot: {stderr.decode(errors='replace')}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        with open(out_path, "wb") as target:
            process = self._chroot(f"cat {shlex.quote(in_path)}", stdin=subprocess.DEVNULL, stdout=target)
            _, stderr = process.communicate()
        if process.returncode != 0:
            raise AnsibleError(f"could not read {in_path} in the chroot: {stderr.decode(errors='replace')}")

    def close(self) -> None:
        self._connected = False
