"""Judge a target against the control catalog by running the Testinfra checks in checks/."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hardening import catalog, ssh
from hardening.disk import mounted_root, require_system_root
from hardening.errors import HardeningError
from hardening.report import Document
from hardening.resources import shipped
from hardening.target import Target

CHECKS_DIR = shipped("checks")
PASSING = ("pass", "skipped")
_PRECEDENCE = ("fail", "error", "pass", "skipped")


@dataclass(frozen=True)
class ControlResult:
    """The verdict on one control and the evidence for it."""

    control: str
    vector: str
    title: str
    status: str
    evidence: str


@dataclass(frozen=True)
class CheckReport:
    """Every verdict on one target."""

    target: str
    profile: str
    os: str
    checked_at: str
    results: tuple[ControlResult, ...]

    @property
    def passed(self) -> bool:
        """True when no control failed or errored (skipped counts as passed)."""
        return all(result.status in PASSING for result in self.results)

    def failing(self) -> list[str]:
        """Ids of the controls that failed or errored."""
        return [result.control for result in self.results if result.status not in PASSING]

    def document(self) -> Document:
        """The report as the renderers in hardening.report take it."""
        rows = [{"control": r.control, "vector": r.vector, "title": r.title, "profile": self.profile,
                 "status": r.status, "evidence": r.evidence, "target": self.target} for r in self.results]
        meta = {"target": self.target, "profile": self.profile, "os": self.os, "checked_at": self.checked_at}
        return Document(title="ami-harden check", meta=meta, rows=rows)


def resolve_target(spec: str, key: str | Path | None = None) -> Target | Path:
    """An SSH Target for `ssh://USER@HOST:PORT`, else an existing directory or image file."""
    if spec.startswith("ssh://"):
        return Target.parse(spec, key=key)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if "@" in spec:
        return Target.parse(spec, key=key)
    raise HardeningError(f"target {spec!r} is neither ssh://USER@HOST:PORT nor an existing directory or image file")


def run_checks(target: Target | str | Path, profile: str = "marketplace", admin_user: str | None = None,
               controls: Iterable[str] | None = None, skip: Iterable[str] = (), as_image: bool = False) -> CheckReport:
    """Check a live target over SSH (with sudo), a mounted root directory or a disk image (as root):
    every control, or those `controls` names, less those `skip` names. `as_image` judges the target as
    its image must be, as apply checks first: a key cloud-init wrote for root at this launch counts
    (offline it always does), and cloud-init may grant sudo to nobody, the admin included."""
    catalog.require_profile(profile)
    wanted, _ = catalog.select(controls or (), skip)
    if isinstance(target, Target):
        os_name = _live_preflight(target)
        args = [f"--hosts={target.testinfra_url}", "--sudo"]
        if admin_user:
            args.append(f"--admin-user={admin_user}")
        return _run(args, target.url, profile, os_name, wanted, as_image)
    path = Path(target)
    if not path.exists():
        raise HardeningError(f"{path} does not exist")
    if os.geteuid() != 0:
        raise HardeningError("an offline check chroots into the image root and must run as root")
    if profile == "marketplace" and not admin_user:
        raise HardeningError("--admin-user is required for an offline marketplace check")
    if path.is_dir():
        return _offline(path, str(path), profile, admin_user, wanted, as_image)
    with mounted_root(path, read_only=True) as root:
        return _offline(root, str(path), profile, admin_user, wanted, as_image)


def _offline(root: Path, label: str, profile: str, admin_user: str | None, wanted: list[catalog.Control],
             as_image: bool) -> CheckReport:
    require_system_root(root, label)
    args = [f"--hosts={root}", "--connection=chroot"]
    if admin_user:
        args.append(f"--admin-user={admin_user}")
    return _run(args, label, profile, _os_release(root), wanted, as_image)


def _live_preflight(target: Target) -> str:
    """Log in once (clear errors before pytest), make sure sudo works, and read the OS name."""
    with ssh.session(target) as client:
        rc, out, err = ssh.run(client, "sudo -n true && cat /etc/os-release", timeout=60)
    if rc != 0:
        raise HardeningError(f"{target.url}: {target.user} cannot use sudo ({err.strip() or f'exit {rc}'}); "
                             "a live check or apply needs it; check a sealed image offline (image file or "
                             "directory)")
    return _pretty_name(out)


def _os_release(root: Path) -> str:
    for relative in ("etc/os-release", "usr/lib/os-release"):
        candidate = root / relative
        if candidate.is_symlink() and os.readlink(candidate).startswith("/"):
            continue
        if candidate.is_file():
            return _pretty_name(candidate.read_text(errors="replace"))
    return "unknown"


def _pretty_name(os_release: str) -> str:
    for line in os_release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def _run(args: list[str], label: str, profile: str, os_name: str, wanted: list[catalog.Control],
         as_image: bool) -> CheckReport:
    collector = _Collector({control.id for control in wanted})
    checked_at = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    options = ["-c", os.devnull, "-p", "no:cacheprovider", "-p", "no:terminal", "--assert=plain",
               "--import-mode=importlib", f"--rootdir={CHECKS_DIR}", f"--profile={profile}"]
    try:
        code = pytest.main([str(CHECKS_DIR), *options, *args, *["--as-image"] * as_image], plugins=[collector])
    finally:
        _forget_testinfra_hosts()
    if collector.problems or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise HardeningError(f"the checks could not run (pytest exit {int(code)}): "
                             + ("; ".join(collector.problems) or "see pytest's message above"))
    results = tuple(collector.result(control) for control in wanted)
    return CheckReport(target=label, profile=profile, os=os_name, checked_at=checked_at, results=results)


def _forget_testinfra_hosts() -> None:
    """Testinfra keeps every host it made, and a paramiko host its SSH connection, for the life of the
    process: a later check of the same target (after a reboot, say) would run on a dead connection.
    Close them and forget them."""
    from testinfra.host import Host

    hosts = [*Host._host_cache.values(), *(host for group in Host._hosts_cache.values() for host in group)]
    for host in hosts:
        client = vars(host.backend).get("client")  # the paramiko backend's connection, once opened
        if client is not None:
            client.close()
    Host._host_cache.clear()
    Host._hosts_cache.clear()


class _Collector:
    """A pytest plugin that keeps only the wanted controls' tests and records their verdicts."""

    def __init__(self, wanted: set[str]):
        self.wanted = wanted
        self.controls_of: dict[str, list[str]] = {}
        self.verdicts: dict[str, list[tuple[str, str]]] = {}
        self.problems: list[str] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.problems.append(f"{report.nodeid or 'collection'}: {str(report.longrepr).strip()[-500:]}")

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep, drop = [], []
        for item in items:
            ids = [marker.args[0] for marker in item.iter_markers("control")]
            if set(ids) & self.wanted:
                self.controls_of[item.nodeid] = ids
                keep.append(item)
            else:
                drop.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        ids = self.controls_of.get(report.nodeid)
        if not ids or (report.when != "call" and report.passed):
            return
        said = [value for name, value in report.user_properties if name == "evidence"]
        if report.skipped:
            status = "skipped"
            evidence = str(report.longrepr[2]).removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) \
                else (said[-1] if said else "skipped")
        elif report.passed:
            status, evidence = "pass", said[-1] if said else "passed"
        else:
            crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", str(report.longrepr))
            judged = report.when == "call" and crash.startswith(("AssertionError", "Failed"))
            status = "fail" if judged else "error"
            evidence = said[-1] if said and judged else crash.strip()
        for control in ids:
            self.verdicts.setdefault(control, []).append((status, evidence))

    def result(self, control: catalog.Control) -> ControlResult:
        verdicts = self.verdicts.get(control.id, [])
        status = next((s for s in _PRECEDENCE if any(v[0] == s for v in verdicts)), "error")
        evidence = "; ".join(dict.fromkeys(e for s, e in verdicts if s == status)) or "no check ran for this control"
        return ControlResult(control.id, control.vector, control.title, status, evidence)
