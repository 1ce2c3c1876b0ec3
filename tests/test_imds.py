"""The lab's EC2 metadata service, run as QEMU runs it (one process per connection, the connection on
stdin and stdout), asked over HTTP the way cloud-init's Ec2 datasource asks."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from hardening.lab import imds

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxlab ami-harden-lab"


@pytest.fixture
def service(tmp_path):
    """A loopback listener that starts the guestfwd command for each connection; yields (base url, dir)."""
    imds.write_state(tmp_path, instance_id="i-0123456789abcdef0", public_key=KEY, user_data=None,
                     mac="52:54:00:12:34:56", local_ipv4="169.254.0.15", cidr="169.254.0.0/16")
    command = shlex.split(imds.guestfwd(tmp_path).split("-cmd:", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))
    children = []

    def accept():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                children.append(subprocess.Popen(command, stdin=connection, stdout=connection))

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", tmp_path
    listener.close()
    for child in children:
        child.wait(timeout=10)


def call(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_tokens_are_required_and_metadata_reads_as_on_ec2(service):
    base, directory = service
    assert call(f"{base}/latest/meta-data/instance-id")[0] == 401
    assert call(f"{base}/latest/api/token", "PUT")[0] == 400
    assert call(f"{base}/latest/api/token", "PUT", {imds.TTL_HEADER: "99999"})[0] == 400
    status, token = call(f"{base}/latest/api/token", "PUT", {imds.TTL_HEADER: "21600"})
    assert status == 200 and token
    auth = {imds.TOKEN_HEADER: token}
    assert call(f"{base}/latest/meta-data/instance-id", headers={imds.TOKEN_HEADER: token + "0"})[0] == 401
    assert call(f"{base}/2021-03-23/meta-data/instance-id", headers=auth) == (200, "i-0123456789abcdef0")
    listing = call(f"{base}/latest/meta-data/", headers=auth)[1].splitlines()
    assert {"instance-id", "public-keys/", "network/", "placement/"} <= set(listing)
    assert call(f"{base}/latest/meta-data/public-keys/", headers=auth) == (200, "0=ami-harden-lab")
    assert call(f"{base}/latest/meta-data/public-keys/0/openssh-key", headers=auth) == (200, KEY)
    assert call(f"{base}/latest/user-data", headers=auth)[0] == 404
    document = json.loads(call(f"{base}/latest/dynamic/instance-identity/document", headers=auth)[1])
    assert document["instanceId"] == "i-0123456789abcdef0" and document["region"] == "us-east-1"
    assert call(f"{base}/latest/meta-data/instance-id", headers={**auth, "X-Forwarded-For": "10.0.0.1"})[0] == 403
    served = imds.requests_served(directory)
    assert served[0].endswith("GET /latest/meta-data/instance-id 401") and len(served) == 12


def test_user_data_is_served_when_the_instance_has_some(tmp_path):
    imds.write_state(tmp_path, instance_id="i-1", public_key=KEY, user_data="#cloud-config\n{}\n",
                     mac="52:54:00:12:34:56", local_ipv4="169.254.0.15", cidr="169.254.0.0/16")
    state = json.loads((tmp_path / imds.STATE).read_text())
    _, token = imds.answer(state, "PUT", imds.TOKEN_PATH, {imds.TTL_HEADER: "60"}, 1000.0)
    assert imds.answer(state, "GET", "/latest/user-data", {imds.TOKEN_HEADER: token}, 1000.0) == \
        (200, "#cloud-config\n{}\n")
    assert imds.answer(state, "GET", "/latest/", {imds.TOKEN_HEADER: token}, 1000.0) == \
        (200, "dynamic/\nmeta-data/\nuser-data")
    assert imds.answer(state, "GET", "/latest/user-data", {imds.TOKEN_HEADER: token}, 1061.0)[0] == 401
