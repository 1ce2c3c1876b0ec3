"""The report renderers: JSON round-trip, JUnit against a Jenkins-style XSD, SARIF against the OASIS
SARIF 2.1.0 schema, HTML in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import xmlschema
from conftest import SARIF_SCHEMA, valid_sarif

from hardening.report import Document, junit, render

XSD = Path(__file__).parent / "data" / "junit-jenkins.xsd"
HOSTILE = '<script>alert("x")</script> & \'quotes\' \x07bell ünïcode'


def _document(target: str = "ssh://admin@127.0.0.1:2222") -> Document:
    rows = [
        {"control": "ROOT-01", "vector": "root-login", "title": "sshd refuses root logins", "status": "fail",
         "evidence": "sshd -T: permitrootlogin yes (set by /etc/ssh/sshd_config.d/50-cloud-init.conf:1)"},
        {"control": "ROOT-02", "vector": "root-login", "title": "no password logins", "status": "pass",
         "evidence": "sshd -T: passwordauthentication no"},
        {"control": "SUDO-02", "vector": "sudo", "title": f"sudo policy {HOSTILE}", "status": "skipped",
         "evidence": "sealed profile: no sudo"},
        {"control": "LABEL-03", "vector": "label-boot", "title": "initramfs check", "status": "error",
         "evidence": f"lsinitramfs failed\nsecond line {HOSTILE}"},
    ]
    rows = [{**row, "profile": "marketplace", "target": target} for row in rows]
    meta = {"target": target, "profile": "marketplace", "os": "Debian GNU/Linux 12 (bookworm)",
            "checked_at": "2026-11-24T10:00:00Z"}
    return Document(title="ami-harden check", meta=meta, rows=rows)


def test_json_round_trips():
    document = _document()
    data = json.loads(render(document, "json"))
    assert {key: data[key] for key in ("target", "profile", "os", "checked_at")} == dict(document.meta)
    assert data["summary"] == {"total": 4, "pass": 1, "fail": 1, "error": 1, "skipped": 1}
    assert data["results"] == [dict(row) for row in document.rows]
    assert set(data["results"][0]) == {"control", "vector", "title", "profile", "status", "evidence", "target"}


def test_table_has_one_row_per_control():
    text = render(_document(), "table")
    assert [line.split()[:2] for line in text.splitlines() if line[:1].isupper() and "-0" in line] == [
        ["ROOT-01", "FAIL"], ["ROOT-02", "PASS"], ["SUDO-02", "SKIPPED"], ["LABEL-03", "ERROR"]]
    assert "permitrootlogin yes" in text
    assert text.rstrip().endswith("4 controls: 1 pass, 1 fail, 1 error, 1 skipped")


def test_junit_is_valid_and_maps_outcomes():
    text = render(_document(), "junit")
    xmlschema.XMLSchema(XSD).validate(text)
    suite = ET.fromstring(text).find("testsuite")
    counts = [suite.get(name) for name in ("tests", "failures", "errors", "skipped")]
    assert counts == ["4", "1", "1", "1"]
    cases = {case.get("name").split()[0]: case for case in suite.findall("testcase")}
    assert cases["ROOT-01"].get("classname") == "root-login"
    assert cases["ROOT-01"].get("name") == "ROOT-01 sshd refuses root logins"
    assert "50-cloud-init.conf" in cases["ROOT-01"].find("failure").text
    assert cases["LABEL-03"].find("error") is not None
    assert cases["SUDO-02"].find("skipped").get("message") == "sealed profile: no sudo"
    assert cases["ROOT-02"].find("system-out").text == "sshd -T: passwordauthentication no"
    assert [child.tag for child in cases["ROOT-02"]] == ["system-out"]


def test_junit_has_one_suite_per_target():
    text = junit([_document("ssh://admin@127.0.0.1:2222"), _document("/mnt/root")])
    xmlschema.XMLSchema(XSD).validate(text)
    root = ET.fromstring(text)
    assert [suite.get("name") for suite in root.findall("testsuite")] == ["ssh://admin@127.0.0.1:2222", "/mnt/root"]
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("8", "2", "2")


def test_other_verdicts_render_through_outcomes():
    rows = [{"control": "user-data", "vector": "user-data", "title": "user-data runs as root", "status": "OPEN",
             "evidence": "runcmd wrote /root/pwned"},
            {"control": "label-boot", "vector": "label-boot", "title": "decoy root", "status": "CLOSED",
             "evidence": "decoy not mounted in 2 boots"}]
    document = Document(title="ami-harden attack", meta={"target": "lab.qcow2"}, rows=rows, unit="vectors",
                        outcomes={"CLOSED": "pass", "OPEN": "fail"})
    text = render(document, "junit")
    xmlschema.XMLSchema(XSD).validate(text)
    assert ET.fromstring(text).find("testsuite").get("failures") == "1"
    assert '<span class="badge fail">OPEN</span>' in render(document, "html")
    assert json.loads(render(document, "json"))["summary"] == {"total": 2, "CLOSED": 1, "OPEN": 1}
    assert "2 vectors: 1 CLOSED, 1 OPEN" in render(document, "table")
    results = valid_sarif(render(document, "sarif"))["runs"][0]["results"]
    assert [(r["ruleId"], r["kind"], r["level"]) for r in results] == [("user-data", "fail", "error"),
                                                                       ("label-boot", "pass", "none")]


def test_sarif_is_valid_with_one_rule_per_control_and_one_result_per_verdict():
    document = _document()
    run = valid_sarif(render(document, "sarif"))["runs"][0]
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == ["ROOT-01", "ROOT-02", "SUDO-02", "LABEL-03"]
    assert run["tool"]["driver"]["rules"][2]["shortDescription"]["text"] == f"sudo policy {HOSTILE}"
    kinds = [(r["ruleId"], r["ruleIndex"], r["kind"], r["level"]) for r in run["results"]]
    assert kinds == [("ROOT-01", 0, "fail", "error"), ("ROOT-02", 1, "pass", "none"),
                     ("SUDO-02", 2, "notApplicable", "none"), ("LABEL-03", 3, "review", "none")]
    assert run["results"][0]["message"]["text"].startswith("FAIL: sshd -T: permitrootlogin yes")
    assert run["properties"]["target"] == "ssh://admin@127.0.0.1:2222"
    with pytest.raises(jsonschema.ValidationError):  # the schema does judge: another version is refused
        jsonschema.Draft4Validator(SARIF_SCHEMA).validate({**json.loads(render(document, "sarif")),
                                                           "version": "2.0.0"})


def test_html_is_self_contained_and_escaped():
    text = render(_document(), "html")
    assert "<script>" not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    for external in ("src=", "href=", "@import", "url("):
        assert external not in text
    assert "Debian GNU/Linux 12 (bookworm)" in text and "2026-11-24T10:00:00Z" in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(_document(), "html"))
    shot = tmp_path / "report.png"
    common = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    summary = ET.fromstring(dom.stdout.split('<p class="total" id="summary">', 1)[1].split("</p>", 1)[0].join(
        ["<p>", "</p>"]))
    assert summary.text == "4 controls: 1 pass, 1 fail, 1 error, 1 skipped"
    assert "Summary by vector" in dom.stdout and "label-boot" in dom.stdout
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"HTML report screenshot: {shot}")
