"""Testinfra checks of the ami-hardening controls.

Live (the SSH user needs sudo):
    pytest checks/ --hosts='paramiko://admin@127.0.0.1:2222?ssh_identity_file=KEY' --sudo
Offline, as root, against a mounted image root (sealed images have no sudo to use live):
    pytest checks/ --hosts=/mnt/root --connection=chroot --admin-user=admin
Every test carries `@pytest.mark.control("ID")` with a catalog id and records its evidence.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hardening.catalog import PROFILES, control
from hardening.facts import Facts, gather_script


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ami-hardening")
    group.addoption("--profile", choices=PROFILES, default="marketplace",
                    help="marketplace: one admin user keeps sudo; sealed: nobody has sudo (default: marketplace)")
    group.addoption("--admin-user", default=None,
                    help="the one user allowed sudo (default: the SSH user; required offline for marketplace)")
    group.addoption("--as-image", action="store_true",
                    help="judge a host as its image must be: a key cloud-init wrote for root at this launch "
                         "counts, and cloud-init may grant sudo to nobody, the admin included (apply checks "
                         "this way first)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "control(id): the catalog control (e.g. ROOT-01) this test judges")
    offline = config.getoption("connection", None) == "chroot"
    if offline and config.getoption("profile") == "marketplace" and not config.getoption("admin_user"):
        raise pytest.UsageError("--admin-user is required for an offline (chroot) marketplace check")


@pytest.fixture(scope="session")
def as_image(pytestconfig: pytest.Config) -> bool:
    """True when a host is judged as its image must be (`--as-image`)."""
    return pytestconfig.getoption("as_image")


@pytest.fixture(scope="session")
def profile(pytestconfig: pytest.Config) -> str:
    """The profile the host is judged against."""
    return pytestconfig.getoption("profile")


@pytest.fixture(scope="module")
def offline(host) -> bool:
    """True when the host is a mounted image root reached through chroot."""
    return host.backend.NAME == "chroot"


@pytest.fixture(scope="module")
def account(host, pytestconfig: pytest.Config) -> str | None:
    """The admin account under either profile (--admin-user, else the SSH user): the one login that may
    hold a key; under sealed it holds no sudo. None for an offline check that names none."""
    return pytestconfig.getoption("admin_user") or getattr(getattr(host.backend, "host", None), "user", None)


@pytest.fixture(scope="module")
def admin_user(account: str | None, profile: str) -> str | None:
    """The admin user of the marketplace profile, the one account allowed sudo (None when sealed)."""
    if profile == "sealed":
        return None
    if not account:
        pytest.fail("--admin-user is required: the connection names no SSH user")
    return account


@pytest.fixture(scope="session")
def _facts_by_host() -> dict[str, Facts]:
    return {}


@pytest.fixture(scope="module")
def facts(host, offline: bool, account: str | None, _facts_by_host: dict[str, Facts]) -> Facts:
    """Every fact of the host, gathered once per host by one shell command."""
    key = host.backend.get_pytest_id()
    if key not in _facts_by_host:
        result = host.run(gather_script(offline, account))
        if result.rc != 0 or "@@AMI@@" not in result.stdout:
            pytest.fail(f"gathering facts failed (exit {result.rc}): {result.stderr.strip()[:500]}")
        _facts_by_host[key] = Facts.from_output(result.stdout, offline, account)
    return _facts_by_host[key]


@pytest.fixture(autouse=True)
def _in_profile(request: pytest.FixtureRequest, profile: str) -> None:
    """Skip a check whose controls the catalog leaves out of the profile being checked."""
    ids = [marker.args[0] for marker in request.node.iter_markers("control")]
    if ids and not any(profile in control(item).profiles for item in ids):
        pytest.skip(f"not a control of the {profile} profile: the catalog gives "
                    + "; ".join(f"{item} to {', '.join(control(item).profiles)}" for item in ids))


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Record a test's evidence (shown for passes and failures alike) and return it."""
    def record(text: str) -> str:
        request.node.user_properties.append(("evidence", text))
        return text

    return record
