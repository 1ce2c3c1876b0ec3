"""Every control's pass and fail scenarios (tests/scenarios/<ID>.yml) fed to its check, without a VM.

A scenario is gathered output as the gather script prints it, section by section, and the verdict the
control's check must reach on it, with a substring of the evidence it must record last. Keys of a case:

    name      what the state is
    profile   marketplace (default) or sealed
    admin     the admin account (default "admin"; null for none); admin_user is None under sealed
    offline   judged from a mounted image root (default false)
    as_image  a live host judged as its image must be, as apply checks first (default false)
    sections  section name -> its output lines, where a line may also be a list of lines (a YAML alias of
              lines shared by several cases); a section left out was not gathered (exit 127)
    rc        section name -> exit code, for the sections that did not exit 0 (optional)
    evidence  a substring of the last evidence the check records
"""

from __future__ import annotations

import importlib.util
import inspect
from functools import cache
from pathlib import Path

import pytest
import yaml

from hardening.catalog import PROFILES, control, controls
from hardening.facts import Facts

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "checks"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
VERDICTS = ("pass", "fail")
CASE_KEYS = {"name", "profile", "admin", "offline", "as_image", "sections", "rc", "evidence"}


def load_scenarios() -> dict[str, dict]:
    """Control id (the file's name) -> its parsed scenario file."""
    return {path.stem: yaml.safe_load(path.read_text()) or {} for path in sorted(SCENARIOS.glob("*.yml"))}


@cache
def checks_by_control() -> dict[str, list]:
    """Control id -> the check functions of checks/test_*.py that carry `@pytest.mark.control(ID)`."""
    found: dict[str, list] = {}
    for path in sorted(CHECKS.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"scenario_checks_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for _, function in inspect.getmembers(module, inspect.isfunction):
            for mark in getattr(function, "pytestmark", []):
                if mark.name == "control" and mark.args:
                    found.setdefault(mark.args[0], []).append(function)
    return found


def lines_of(section: list) -> list[str]:
    """A section's lines, with the lists among them (aliases of shared lines) spliced in."""
    return [line for item in section for line in (item if isinstance(item, list) else [item])]


def gathered_output(sections: dict[str, list], rc: dict[str, int]) -> str:
    """The sections as the gather script's run() prints them: output, a newline, then the exit code."""
    return "".join(f"@@AMI@@ {name}\n" + "".join(f"{line}\n" for line in lines_of(lines))
                   + f"\n@@RC@@ {rc.get(name, 0)}\n" for name, lines in sections.items())


def verdict(check, case: dict) -> tuple[str, str]:
    """('pass', 'fail' or 'skip', the last evidence) of one check on one scenario, given the arguments
    checks/conftest.py's fixtures would give it."""
    profile = case.get("profile", "marketplace")
    account = case.get("admin", "admin")
    offline = bool(case.get("offline", False))
    facts = Facts.from_output(gathered_output(case.get("sections") or {}, case.get("rc") or {}),
                              offline=offline, admin_user=account)
    said: list[str] = []

    def evidence(text: str) -> str:
        said.append(text)
        return text

    available = {"facts": facts, "evidence": evidence, "profile": profile, "offline": offline, "account": account,
                 "admin_user": None if profile == "sealed" else account, "as_image": bool(case.get("as_image"))}
    wanted = list(inspect.signature(check).parameters)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise TypeError(f"{check.__name__} asks for {', '.join(unknown)}: no scenario value for it")
    if "admin_user" in wanted and profile == "marketplace" and not account:
        raise ValueError("the admin_user fixture fails under marketplace without an admin: give the case one")
    try:
        check(**{name: available[name] for name in wanted})
    except (AssertionError, pytest.fail.Exception):
        return "fail", said[-1] if said else ""
    except pytest.skip.Exception:
        return "skip", said[-1] if said else ""
    return "pass", said[-1] if said else ""


def _cases():
    for control_id, scenario in load_scenarios().items():
        for expected in VERDICTS:
            for index, case in enumerate(scenario.get(expected) or []):
                yield pytest.param(control_id, expected, case, id=f"{control_id}-{expected}-{index}")


@pytest.mark.parametrize(("control_id", "expected", "case"), list(_cases()))
def test_scenario(control_id, expected, case):
    checks = checks_by_control().get(control_id, [])
    assert len(checks) == 1, f"{control_id}: want one check in checks/ carrying its marker, found {len(checks)}"
    status, said = verdict(checks[0], case)
    assert status == expected, f"{case['name']}: {checks[0].__name__} said {status}: {said}"
    assert case["evidence"] in said, f"{case['name']}: evidence lacks {case['evidence']!r}: {said}"


def test_every_control_has_a_pass_and_a_fail_scenario():
    scenarios = load_scenarios()
    catalog = [item.id for item in controls()]
    problems = [f"{control_id}: no tests/scenarios/{control_id}.yml" for control_id in catalog
                if control_id not in scenarios]
    problems += [f"{control_id}.yml: no {expected} case" for control_id, scenario in scenarios.items()
                 for expected in VERDICTS if not scenario.get(expected)]
    problems += [f"{control_id}.yml: {control_id} is not a catalog control" for control_id in scenarios
                 if control_id not in catalog]
    assert not problems, "; ".join(problems)


def test_scenario_cases_are_well_formed():
    problems = []
    for control_id, scenario in load_scenarios().items():
        if not isinstance(scenario, dict) or set(scenario) - set(VERDICTS):
            problems.append(f"{control_id}.yml: top-level keys must be {' and '.join(VERDICTS)}")
            continue
        for expected in VERDICTS:
            for index, case in enumerate(scenario.get(expected) or []):
                where = f"{control_id}-{expected}-{index}"
                if not isinstance(case, dict):
                    problems.append(f"{where}: not a mapping")
                    continue
                problems += [f"{where}: unknown key {key!r}" for key in sorted(set(case) - CASE_KEYS)]
                problems += [f"{where}: no {key}" for key in ("name", "sections", "evidence") if not case.get(key)]
                if case.get("profile", "marketplace") not in control(control_id).profiles:
                    problems.append(f"{where}: the catalog leaves {control_id} out of that profile (its check "
                                    "is skipped there)")
                if case.get("profile", "marketplace") not in PROFILES:
                    problems.append(f"{where}: profile {case['profile']!r} is not one of {', '.join(PROFILES)}")
                for flag in ("offline", "as_image"):
                    if not isinstance(case.get(flag, False), bool):
                        problems.append(f"{where}: {flag} must be true or false")
                if not isinstance(case.get("admin", "admin"), str | None):
                    problems.append(f"{where}: admin must be an account name or null")
                sections = case.get("sections") or {}
                problems += [f"{where}: section {name} is not a list of lines" for name, lines in sections.items()
                             if not isinstance(lines, list)
                             or not all(isinstance(line, str) for line in lines_of(lines))]
                problems += [f"{where}: rc names {name}, which is not among its sections"
                             for name in case.get("rc") or {} if name not in sections]
    assert not problems, "; ".join(problems)
