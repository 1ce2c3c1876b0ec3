"""One description of an SSH target that paramiko, Ansible and Testinfra all accept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import paramiko

from hardening.errors import HardeningError

_SPEC = re.compile(r"^(?:ssh://)?(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+)(?::(?P<port>\d+))?/?$")


@dataclass(frozen=True)
class Target:
    """An SSH endpoint with the user and private key to log in with."""

    host: str
    port: int = 22
    user: str = "root"
    key: Path | None = None

    @classmethod
    def parse(cls, spec: str, key: str | Path | None = None, user: str | None = None) -> Target:
        """Read `ssh://user@host:port`, `user@host:port` or `host`; raise HardeningError otherwise."""
        match = _SPEC.match(spec.strip())
        if not match:
            raise HardeningError(f"target {spec!r} is not of the form ssh://USER@HOST:PORT")
        key_path = Path(key).expanduser() if key else None
        if key_path is not None:
            _require_private_key(key_path)
        return cls(
            host=match["host"],
            port=int(match["port"] or 22),
            user=user or match["user"] or "root",
            key=key_path,
        )

    @property
    def url(self) -> str:
        """The target as `ssh://USER@HOST:PORT`."""
        return f"ssh://{self.user}@{self.host}:{self.port}"

    @property
    def testinfra_url(self) -> str:
        """The target as a Testinfra paramiko host URL."""
        query = f"?ssh_identity_file={self.key}" if self.key else ""
        return f"paramiko://{self.user}@{self.host}:{self.port}{query}"

    def ansible_inventory(self, name: str = "target") -> dict:
        """An Ansible YAML inventory holding this one host."""
        host_vars = {
            "ansible_host": self.host,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        }
        if self.key:
            host_vars["ansible_ssh_private_key_file"] = str(self.key)
        return {"all": {"hosts": {name: host_vars}}}

    def as_dict(self) -> dict:
        """A JSON-ready record of the target."""
        return {"target": self.url, "host": self.host, "port": self.port, "user": self.user,
                "key": str(self.key) if self.key else None}


@dataclass(frozen=True)
class Image:
    """A disk image file (qcow2, raw, ...) or a directory holding a mounted root, reached through chroot."""

    path: Path

    @staticmethod
    def chroot_inventory(root: Path) -> dict:
        """An Ansible YAML inventory that runs every task inside `root` through chroot."""
        host_vars = {"ansible_connection": "ami_hardening_chroot", "ansible_host": str(root),
                     "ansible_become": False, "ansible_python_interpreter": "/usr/bin/python3",
                     "ansible_remote_tmp": "/run/ami-hardening/ansible"}
        return {"all": {"hosts": {"image": host_vars}}}


def _require_private_key(path: Path) -> None:
    """HardeningError unless `path` is a private key that can be used without a passphrase."""
    if not path.is_file():
        raise HardeningError(f"SSH key {path} does not exist")
    try:
        paramiko.PKey.from_path(path)
    except (ValueError, TypeError, paramiko.SSHException, OSError, UnicodeDecodeError) as error:
        # A protected key reads as PasswordRequiredException (PEM) or TypeError (OpenSSH format).
        if isinstance(error, paramiko.PasswordRequiredException) or "password" in str(error).lower():
            raise HardeningError(f"SSH key {path} needs a passphrase; give a key without one") from None
        raise HardeningError(f"SSH key {path} is not a private key (ed25519, ECDSA or RSA)") from None
