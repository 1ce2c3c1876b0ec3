"""The control catalog agrees with the roles, their argument specs and the Testinfra checks."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from hardening.catalog import PROFILES, VECTORS, control, controls, vector_tags
from hardening.errors import HardeningError

ROOT = Path(__file__).resolve().parents[1]
ROLES = ROOT / "playbooks" / "roles"
CHECKS = ROOT / "checks"
OUR_ROLES = ("ami_hardening_preflight", "ami_hardening_lockout_guard", "ami_hardening_root_login",
             "ami_hardening_sudo", "ami_hardening_user_data", "ami_hardening_label_boot")


def _tags_in(node) -> set[str]:
    """Every tag named in a parsed playbook or task file (tasks, blocks, plays, roles)."""
    found: set[str] = set()
    if isinstance(node, dict):
        tags = node.get("tags", [])
        found.update([tags] if isinstance(tags, str) else tags)
        for value in node.values():
            found |= _tags_in(value)
    elif isinstance(node, list):
        for item in node:
            found |= _tags_in(item)
    return found


def role_tags() -> set[str]:
    """Tags used by our roles and by harden.yml."""
    files = [ROOT / "playbooks" / "harden.yml"]
    for role in OUR_ROLES:
        files += sorted((ROLES / role / "tasks").glob("*.yml"))
    return set().union(*(_tags_in(yaml.safe_load(path.read_text())) for path in files))


def documented_variables() -> set[str]:
    """Options documented in the argument specs of our roles."""
    names: set[str] = set()
    for role in OUR_ROLES:
        spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
        names |= set(spec["argument_specs"]["main"]["options"])
    return names


def default_variables() -> set[str]:
    """Variables given a default in our roles' defaults/main.yml."""
    names: set[str] = set()
    for role in OUR_ROLES:
        names |= set(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {})
    return names


def check_markers(path: Path) -> set[str]:
    """Control ids of `@pytest.mark.control("ID")` on test functions of a checks module."""
    ids: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.name.startswith("test"):
            continue
        for decorator in node.decorator_list:
            if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "control" and decorator.args
                    and isinstance(decorator.args[0], ast.Constant)):
                ids.add(decorator.args[0].value)
    return ids


def test_catalog_entries_are_consistent():
    ids = [item.id for item in controls()]
    assert len(ids) == len(set(ids)) == 27
    for item in controls():
        assert item.tag == item.id.lower().replace("-", "_")
        prefix = {"root-login": "ROOT", "sudo": "SUDO", "user-data": "USER", "label-boot": "LABEL"}[item.vector]
        assert item.id.startswith(f"{prefix}-")
        assert set(item.profiles) <= set(PROFILES) and item.profiles
        assert item.variable.startswith(f"ami_hardening_{item.vector_tag}_") and item.variable.endswith("_enabled")
        assert item.check == f"checks/test_{item.vector_tag}.py"
        assert item.title and item.rationale


def test_control_lookup():
    assert control("root-01").id == "ROOT-01"
    with pytest.raises(HardeningError, match=r"unknown control id 'ROOT-99'; see `ami-harden controls`"):
        control("ROOT-99")


def test_every_control_tag_is_used_in_the_roles():
    missing = {item.id for item in controls()} - {item.id for item in controls() if item.tag in role_tags()}
    assert not missing


def test_every_role_tag_maps_to_a_control():
    known = {item.tag for item in controls()} | set(vector_tags()) | {"always"}
    assert role_tags() - known == set()


def test_every_variable_has_a_default_and_is_documented():
    variables = {item.variable for item in controls()}
    assert variables - default_variables() == set()
    assert variables - documented_variables() == set()
    assert default_variables() - documented_variables() == set()


def test_every_control_has_a_check():
    if not CHECKS.is_dir():
        pytest.skip("checks/ does not exist yet: the Testinfra checks are written separately")
    for item in controls():
        assert item.id in check_markers(ROOT / item.check), f"{item.check} has no test marked {item.id}"


def test_every_check_marker_names_a_control():
    if not CHECKS.is_dir():
        pytest.skip("checks/ does not exist yet: the Testinfra checks are written separately")
    known = {item.id for item in controls()}
    for path in sorted(CHECKS.glob("test_*.py")):
        assert check_markers(path) <= known, path


def test_controls_command_lists_the_catalog():
    run = [sys.executable, "-m", "hardening.cli", "controls", "--format", "json"]
    listed = json.loads(subprocess.run(run, capture_output=True, text=True, check=True, cwd=ROOT).stdout)
    assert [entry["id"] for entry in listed] == [item.id for item in controls()]
    table = subprocess.run(run[:-2], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert table.splitlines()[0].split() == ["ID", "VECTOR", "PROFILES", "TAG", "TITLE"]
    assert len(table.splitlines()) == len(controls()) + 1


def test_profiles_written_outside_python_are_the_catalogs():
    """Packer's validation and the roles' argument specs cannot import the catalog: they must agree with it."""
    hcl = (ROOT / "packer" / "variables.pkr.hcl").read_text()
    listed = re.search(r"contains\((\[[^\]]*\]), var\.profile\)", hcl)
    assert listed and tuple(json.loads(listed.group(1))) == PROFILES
    preflight = yaml.safe_load((ROLES / "ami_hardening_preflight" / "vars" / "main.yml").read_text())
    assert tuple(preflight["ami_hardening_preflight_profiles"]) == PROFILES
    for role, option in (("ami_hardening_preflight", "ami_hardening_profile"),
                         ("ami_hardening_seal", "ami_hardening_seal_profile")):
        spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
        assert tuple(spec["argument_specs"]["main"]["options"][option]["choices"]) == PROFILES, role


def test_every_control_names_a_catalog_vector():
    assert {item.vector for item in controls()} == set(VECTORS)


def _named_tasks(tasks, inherited: tuple[str, ...], files: dict[str, list[tuple[str, ...]]]):
    """(name, control ids its tags or its imports' tags give it) of every task, block and import."""
    for task in tasks or []:
        tags = task.get("tags", [])
        own = tuple(item.id for item in controls() if item.tag in ([tags] if isinstance(tags, str) else tags))
        ids = own or inherited
        if task.get("name"):
            yield task["name"], ids
        for key in ("block", "rescue", "always"):
            yield from _named_tasks(task.get(key), ids, files)
        imported = task.get("ansible.builtin.import_tasks")
        if imported:
            files.setdefault(imported, []).append(ids)


def test_every_task_of_a_control_names_it_first():
    """ansible-lockdown's habit: "ROOT-01 | ..." and "LABEL-01, LABEL-03 | ...", so a failing task names its
    control; tasks that serve no control in particular (offline set-up, imports of several) carry none."""
    wrong = []
    for role in OUR_ROLES[1:]:
        tasks_dir = ROLES / role / "tasks"
        files: dict[str, list[tuple[str, ...]]] = {}
        named = list(_named_tasks(yaml.safe_load((tasks_dir / "main.yml").read_text()), (), files))
        for name, lists in files.items():
            inherited = tuple(dict.fromkeys(item for ids in lists for item in ids))
            named += _named_tasks(yaml.safe_load((tasks_dir / name).read_text()), inherited, {})
        for name, ids in named:
            prefix, bar, _ = name.partition(" | ")
            if ids and (not bar or prefix.split(", ") != list(ids)):
                wrong.append(f"{role}: {name!r} should start {', '.join(ids)} | ")
            elif not ids and bar:
                wrong.append(f"{role}: {name!r} names controls its tags do not")
    assert not wrong, "\n".join(wrong)


def test_each_switch_defaults_on_in_the_profiles_of_its_control():
    """A playbook run without `ami-harden` (which turns switches off per profile) follows the catalog too."""
    defaults = {}
    for role in OUR_ROLES:
        defaults.update(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {})
    for item in controls():
        for profile in PROFILES:
            value = defaults[item.variable]
            if isinstance(value, str):
                value = jinja2.Environment().from_string(value).render(ami_hardening_profile=profile) == "True"
            assert value is (profile in item.profiles), (item.id, profile)
