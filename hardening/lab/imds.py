"""An EC2 instance metadata service (IMDSv2, tokens required) for one lab instance.

QEMU's user network runs this file once per guest connection to 169.254.169.254:80, with the
connection on stdin and stdout (`guestfwd=...-cmd:`); it reads the instance's metadata from the
directory it is given and appends one line per request to `requests.log` there. Standard library
only: QEMU starts it with the interpreter alone, and it never opens a socket of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sys
import time
from pathlib import Path
from typing import BinaryIO

ADDRESS = "169.254.169.254"
STATE = "imds.json"
LOG = "requests.log"
TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "x-aws-ec2-metadata-token"
MAX_TTL = 21600
_VERSION = re.compile(r"^(latest|\d{4}-\d{2}-\d{2})$")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed"}


def write_state(directory: Path, *, instance_id: str, public_key: str, user_data: str | None, mac: str,
                local_ipv4: str, cidr: str, image_id: str = "ami-0a1b2c3d4e5f60718",
                instance_type: str = "t3.micro", zone: str = "us-east-1a") -> Path:
    """Write what the service answers for one instance; its token secret is new each time."""
    region = zone[:-1]
    interface = {"device-number": "0", "interface-id": "eni-0lab" + instance_id[-9:], "local-hostname": "ami-lab",
                 "local-ipv4s": local_ipv4, "mac": mac, "owner-id": "123456789012",
                 "subnet-id": "subnet-0lab", "subnet-ipv4-cidr-block": cidr, "vpc-id": "vpc-0lab",
                 "vpc-ipv4-cidr-block": cidr, "vpc-ipv4-cidr-blocks": cidr}
    meta = {
        "ami-id": image_id, "ami-launch-index": "0", "ami-manifest-path": "(unknown)",
        "block-device-mapping": {"ami": "/dev/xvda", "root": "/dev/xvda"},
        "hostname": "ami-lab", "instance-action": "none", "instance-id": instance_id,
        "instance-life-cycle": "on-demand", "instance-type": instance_type, "local-hostname": "ami-lab",
        "local-ipv4": local_ipv4, "mac": mac,
        "network": {"interfaces": {"macs": {mac: interface}}},
        "placement": {"availability-zone": zone, "availability-zone-id": "use1-az1", "region": region},
        "public-keys": {"0": {"openssh-key": public_key}},
        "reservation-id": "r-0lab" + instance_id[-9:], "security-groups": "default",
        "services": {"domain": "amazonaws.com", "partition": "aws"},
    }
    document = {"accountId": "123456789012", "architecture": "x86_64", "availabilityZone": zone,
                "imageId": image_id, "instanceId": instance_id, "instanceType": instance_type,
                "pendingTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "privateIp": local_ipv4,
                "region": region, "version": "2017-09-30"}
    state = {"secret": secrets.token_hex(16), "key-name": "ami-harden-lab", "meta-data": meta,
             "dynamic": {"instance-identity": {"document": json.dumps(document, indent=2)}},
             "user-data": user_data}
    path = directory / STATE
    path.write_text(json.dumps(state))
    return path


def _token(secret: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), str(expires).encode(), hashlib.sha256).hexdigest()[:32]
    return f"{expires}.{mac}"


def _token_valid(secret: str, token: str, now: float) -> bool:
    expires, _, _ = token.partition(".")
    return expires.isdigit() and int(expires) > now and hmac.compare_digest(token, _token(secret, int(expires)))


def _listing(node: dict, key_name: str, is_keys: bool) -> str:
    if is_keys:
        return "\n".join(f"{index}={key_name}" for index in node)
    return "\n".join(f"{name}/" if isinstance(value, dict) else name for name, value in node.items())


def answer(state: dict, method: str, path: str, headers: dict[str, str], now: float) -> tuple[int, str]:
    """The status and body IMDSv2 (tokens required) gives for one request."""
    if "x-forwarded-for" in headers:
        return 403, ""
    path = path.split("?", 1)[0]
    if path == TOKEN_PATH:
        if method != "PUT":
            return 405, ""
        ttl = headers.get(TTL_HEADER, "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TTL:
            return 400, ""
        return 200, _token(state["secret"], int(now) + int(ttl))
    if method not in ("GET", "HEAD"):
        return 405, ""
    if not _token_valid(state["secret"], headers.get(TOKEN_HEADER, ""), now):
        return 401, ""
    parts = [part for part in path.split("/") if part]
    if not parts:
        return 200, "latest"
    if not _VERSION.match(parts[0]):
        return 404, ""
    top = {name: state[name] for name in ("dynamic", "meta-data", "user-data") if state.get(name) is not None}
    node: dict | str = top
    for part in parts[1:]:
        if not isinstance(node, dict) or part not in node:
            return 404, ""
        node = node[part]
    if isinstance(node, dict):
        return 200, _listing(node, state["key-name"], parts[1:] == ["meta-data", "public-keys"])
    return 200, node


def _read_request(reader: BinaryIO) -> tuple[str, str, str, dict[str, str], bytes] | None:
    line = reader.readline()
    while line in (b"\r\n", b"\n"):
        line = reader.readline()
    if not line:
        return None
    method, target, version = [*line.decode("latin-1").split(), "", "", ""][:3]
    headers: dict[str, str] = {}
    while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "0")
    body = reader.read(int(length)) if length.isdigit() and int(length) else b""
    return method, target, version, headers, body


def serve(directory: Path, reader: BinaryIO, writer: BinaryIO) -> None:
    """Answer the requests of one connection until the guest closes it."""
    state = json.loads((directory / STATE).read_text())
    with (directory / LOG).open("a") as log:
        while (request := _read_request(reader)) is not None:
            method, target, version, headers, _ = request
            status, body = answer(state, method, target, headers, time.time())
            payload = body.encode() if status == 200 else b""
            close = version != "HTTP/1.1" or headers.get("connection", "").lower() == "close"
            head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: text/plain",
                    f"Content-Length: {len(payload)}", "Server: EC2ws",
                    f"Connection: {'close' if close else 'keep-alive'}"]
            log.write(f"{time.strftime('%H:%M:%S')} {method} {target} {status}"
                      f"{' token' if TOKEN_HEADER in headers else ''}\n")
            log.flush()
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (payload if method != "HEAD" else b""))
            writer.flush()
            if close:
                return


def requests_served(directory: Path) -> list[str]:
    """The lines `serve` logged for this instance, oldest first."""
    log = directory / LOG
    return log.read_text().splitlines() if log.exists() else []


def guestfwd(directory: Path) -> str:
    """QEMU's user-network option that runs this service for each connection to ADDRESS:80."""
    command = f"{sys.executable} -I {Path(__file__).resolve()} {directory.resolve()}"
    if "," in command:
        raise ValueError(f"QEMU option values cannot hold a comma: {command}")
    return f"guestfwd=tcp:{ADDRESS}:80-cmd:{command}"


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)
