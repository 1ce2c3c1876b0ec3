"""The demo: attack the vulnerable lab image, harden a copy over SSH, attack it again, compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hardening.apply import require_ansible
from hardening.attack.probe import AttackReport, attack
from hardening.lab.hardened import harden_copy
from hardening.lab.image import VARIANTS, ensure_image
from hardening.lab.vm import require_qemu
from hardening.progress import Progress


@dataclass
class DemoResult:
    """Both attack reports and where the files went."""

    before: AttackReport
    after: AttackReport
    hardened_image: Path
    apply_log: Path

    def table(self) -> str:
        """Before/after, one line per vector."""
        lines = [f"{'vector':<12} {'before':<14} after", f"{'-' * 12} {'-' * 14} {'-' * 12}"]
        for old, new in zip(self.before.vectors, self.after.vectors, strict=True):
            lines.append(f"{old.vector:<12} {old.status:<14} {new.status}")
        return "\n".join(lines)


def consoles_dir(workdir: Path, when: str) -> Path:
    """Where the demo keeps the serial consoles of the attack `when` ("before" or "after")."""
    return workdir / f"consoles-{when}"


def run_demo(workdir: Path, progress: Progress, profile: str = "marketplace", variant: str = "debian") -> DemoResult:
    """Build or reuse the lab image of `variant`, attack it, harden a copy with `apply`, attack the copy."""
    require_qemu()
    require_ansible()
    with progress.stage("lab image") as stage:
        stage.waiting("the cached lab image, or mmdebstrap building it (about a minute)")
        image = ensure_image(variant, log=stage.say)
        stage.say(str(image))
    admin = VARIANTS[variant]
    workdir.mkdir(parents=True, exist_ok=True)
    with progress.stage("attack before") as stage:
        before = attack(image, profile=profile, admin_user=admin, log=stage.waiting,
                        console_dir=consoles_dir(workdir, "before"))
    hardened = workdir / f"hardened-{profile}.qcow2"
    apply_log = workdir / "apply.log"
    with progress.stage("apply") as stage:
        stage.waiting(f"a new instance to boot and ansible-playbook to apply the {profile} profile over SSH "
                      f"(log: {apply_log})")
        result = harden_copy(image, hardened, profile=profile, log_path=apply_log, user=admin,
                             progress=lambda line: line.startswith(("TASK", "changed", "fatal")) and stage.say(line))
        stage.say(result.summary())
    with progress.stage("attack after") as stage:
        after = attack(hardened, profile=profile, admin_user=admin, log=stage.waiting,
                       console_dir=consoles_dir(workdir, "after"))
    return DemoResult(before, after, hardened, apply_log)
