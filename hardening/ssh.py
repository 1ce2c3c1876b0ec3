"""Paramiko sessions to a Target: connect with clear errors, run commands."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko

from hardening.errors import HardeningError
from hardening.target import Target

# Paramiko logs a traceback from its transport thread for every refused banner while sshd starts.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def connect(target: Target, timeout: float = 10.0) -> paramiko.SSHClient:
    """Open an SSH session, turning every failure into a HardeningError that names the cause."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            target.host, port=target.port, username=target.user,
            key_filename=str(target.key) if target.key else None,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
            look_for_keys=target.key is None, allow_agent=target.key is None,
        )
    except paramiko.AuthenticationException as error:
        client.close()
        raise HardeningError(f"{target.url}: SSH login refused for {target.user!r} ({error})") from None
    except paramiko.SSHException as error:
        client.close()
        if "not a valid" in str(error) or "private key" in str(error).lower():
            raise HardeningError(f"SSH key {target.key} is not a usable private key ({error})") from None
        raise HardeningError(f"{target.url}: SSH failed ({error})") from None
    except OSError as error:
        client.close()
        raise HardeningError(f"{target.url}: host unreachable ({error})") from None
    return client


@contextmanager
def session(target: Target, timeout: float = 10.0) -> Iterator[paramiko.SSHClient]:
    """An SSH session that is always closed."""
    client = connect(target, timeout)
    try:
        yield client
    finally:
        client.close()


def run(client: paramiko.SSHClient, command: str, timeout: float = 120.0) -> tuple[int, str, str]:
    """Run one command; return (exit code, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err
