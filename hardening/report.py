"""Render verdicts about a target as a text table, JSON, JUnit XML, SARIF 2.1.0 or one self-contained
HTML file.

The renderers take a `Document`: metadata plus rows of `control`, `vector`, `title`, `status` and
`evidence` (other keys pass through to JSON). `outcomes` maps each status to pass/fail/error/skipped,
so verdicts other than check results (an attack probe's OPEN/CLOSED) render the same way.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hardening import __version__

OUTCOMES = ("pass", "fail", "error", "skipped")
FORMATS = ("table", "json", "junit", "sarif", "html")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Document:
    """Verdicts about one target and the metadata shown with them (in display order)."""

    title: str
    meta: Mapping[str, str]
    rows: Sequence[Mapping]
    unit: str = "controls"
    outcomes: Mapping[str, str] = field(default_factory=lambda: {name: name for name in OUTCOMES})

    def outcome(self, row: Mapping) -> str:
        """pass, fail, error or skipped for a row (an unknown status counts as an error)."""
        return self.outcomes.get(row["status"], "error")

    def statuses(self) -> list[str]:
        """Every status of `outcomes`, then any other status present in the rows."""
        present = dict.fromkeys(row["status"] for row in self.rows)
        return [*self.outcomes, *(status for status in present if status not in self.outcomes)]

    def summary(self) -> dict[str, int]:
        """Row count per status (zeros included), plus `total`."""
        counts = Counter(row["status"] for row in self.rows)
        return {"total": len(self.rows), **{status: counts[status] for status in self.statuses()}}

    def by_vector(self) -> dict[str, Counter]:
        """Status counts per vector, in order of first appearance."""
        grouped: dict[str, Counter] = {}
        for row in self.rows:
            grouped.setdefault(row["vector"], Counter())[row["status"]] += 1
        return grouped


def render(document: Document, fmt: str) -> str:
    """The document in one of FORMATS."""
    renderers = {"table": table, "json": to_json, "junit": lambda doc: junit([doc]), "sarif": sarif,
                 "html": to_html}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return renderers[fmt](document)


def _summary_line(document: Document) -> str:
    summary = document.summary()
    counts = ", ".join(f"{count} {status}" for status, count in summary.items() if status != "total" and count)
    return f"{summary['total']} {document.unit}: {counts}"


def table(document: Document) -> str:
    """A readable text table: a row per control, its evidence indented beneath."""
    lines = [document.title, *(f"  {key}: {value}" for key, value in document.meta.items()), ""]
    id_width = max([len("CONTROL"), *(len(str(row["control"])) for row in document.rows)])
    status_width = max([len("STATUS"), *(len(str(row["status"])) for row in document.rows)])
    vector_width = max([len("VECTOR"), *(len(str(row["vector"])) for row in document.rows)])
    lines.append(f"{'CONTROL':<{id_width}}  {'STATUS':<{status_width}}  {'VECTOR':<{vector_width}}  TITLE")
    indent = " " * (id_width + status_width + vector_width + 6)
    for row in document.rows:
        lines.append(f"{row['control']:<{id_width}}  {str(row['status']).upper():<{status_width}}  "
                     f"{row['vector']:<{vector_width}}  {row['title']}")
        lines.extend(f"{indent}{part}" for part in str(row["evidence"]).splitlines() or [""])
    lines += ["", _summary_line(document)]
    return "\n".join(lines) + "\n"


def to_json(document: Document) -> str:
    """A JSON object: the metadata, `summary` and the `results` rows."""
    data = {**document.meta, "summary": document.summary(), "results": [dict(row) for row in document.rows]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _xml_text(value) -> str:
    return _XML_ILLEGAL.sub("?", str(value))


def junit(documents: Sequence[Document]) -> str:
    """JUnit XML: one testsuite per target, one testcase per control (classname = vector)."""
    root = ET.Element("testsuites", name=_xml_text(documents[0].title if documents else "ami-hardening"))
    totals = Counter()
    for document in documents:
        counts = Counter(document.outcome(row) for row in document.rows)
        totals.update(counts)
        totals["tests"] += len(document.rows)
        suite = ET.SubElement(root, "testsuite", {
            "name": _xml_text(document.meta.get("target", document.title)),
            "tests": str(len(document.rows)), "failures": str(counts["fail"]), "errors": str(counts["error"]),
            "skipped": str(counts["skipped"]), "time": "0",
        })
        if "checked_at" in document.meta:
            suite.set("timestamp", _xml_text(document.meta["checked_at"]))
        properties = ET.SubElement(suite, "properties")
        for key, value in document.meta.items():
            ET.SubElement(properties, "property", name=_xml_text(key), value=_xml_text(value))
        for row in document.rows:
            case = ET.SubElement(suite, "testcase", classname=_xml_text(row["vector"]),
                                 name=_xml_text(f"{row['control']} {row['title']}"), time="0")
            evidence = _xml_text(row["evidence"])
            outcome = document.outcome(row)
            tag = {"fail": "failure", "error": "error", "skipped": "skipped"}.get(outcome)
            if tag:
                detail = ET.SubElement(case, tag, message=evidence.splitlines()[0] if evidence else "",
                                       type=_xml_text(row["status"]))
                detail.text = evidence
            else:
                ET.SubElement(case, "system-out").text = evidence
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["fail"]))
    root.set("errors", str(totals["error"]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# SARIF's result kind and level for each outcome: a failed control is an error-level finding; an
# error (the check could not judge) asks for review; SARIF allows a level only on a failure.
_SARIF_RESULT = {"fail": {"kind": "fail", "level": "error"}, "error": {"kind": "review", "level": "none"},
                 "pass": {"kind": "pass", "level": "none"}, "skipped": {"kind": "notApplicable", "level": "none"}}


def sarif(document: Document) -> str:
    """SARIF 2.1.0 for code-scanning tools: one rule per control (or attacked vector), one result per
    verdict, the target and the other metadata as the run's properties."""
    rules = {str(row["control"]): {"id": str(row["control"]), "name": str(row["control"]),
                                   "shortDescription": {"text": str(row["title"])},
                                   "properties": {"vector": str(row["vector"])}} for row in document.rows}
    index = {rule: number for number, rule in enumerate(rules)}
    results = [{"ruleId": str(row["control"]), "ruleIndex": index[str(row["control"])],
                **_SARIF_RESULT[document.outcome(row)],
                "message": {"text": f"{str(row['status']).upper()}: {row['evidence'] or row['title']}"},
                "properties": {"status": str(row["status"])}} for row in document.rows]
    run = {"tool": {"driver": {"name": "ami-harden", "version": __version__,
                               "rules": list(rules.values())}},
           "automationDetails": {"id": f"{document.title}/{document.meta.get('target', '')}"},
           "results": results, "properties": {str(key): str(value) for key, value in document.meta.items()}}
    data = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1d2430; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; margin-top: .5rem; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #d8dde6; vertical-align: top; }
th { background: #eef1f6; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
.badge { display: inline-block; padding: .1rem .5rem; border-radius: .8rem; font-weight: 600; font-size: .8rem; }
.pass { background: #d9f2e1; color: #12602e; } .fail { background: #fbdada; color: #8a1616; }
.error { background: #fde8c8; color: #7a4a00; } .skipped { background: #e6e8ec; color: #4a5160; }
td.evidence { font-family: ui-monospace, monospace; font-size: .85rem; white-space: pre-wrap; word-break: break-word; }
p.total { font-size: 1.05rem; font-weight: 600; }
table.results td:nth-child(-n+2) { white-space: nowrap; }
"""


def to_html(document: Document) -> str:
    """One self-contained HTML page (inline CSS, no external assets); every value escaped."""
    def esc(value) -> str:
        return html.escape(str(value), quote=True)

    statuses = document.statuses()

    def badge(status: str) -> str:
        return f'<span class="badge {document.outcomes.get(status, "error")}">{esc(str(status).upper())}</span>'

    meta = "".join(f"<dt>{esc(key)}</dt><dd>{esc(value)}</dd>" for key, value in document.meta.items())
    head = "".join(f"<th>{badge(status)}</th>" for status in statuses)
    vectors = "".join(
        f"<tr><td>{esc(vector)}</td>" + "".join(f"<td>{counts[status]}</td>" for status in statuses)
        + f"<td>{sum(counts.values())}</td></tr>"
        for vector, counts in document.by_vector().items())
    rows = "".join(
        f'<tr id="{esc(row["control"])}"><td>{esc(row["control"])}</td><td>{esc(row["vector"])}</td>'
        f'<td>{esc(row["title"])}</td><td>{badge(row["status"])}</td>'
        f'<td class="evidence">{esc(row["evidence"])}</td></tr>'
        for row in document.rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(document.title)}: {esc(document.meta.get("target", ""))}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(document.title)}</h1>
<dl class="meta">{meta}</dl>
<h2>Summary by vector</h2>
<p class="total" id="summary">{esc(_summary_line(document))}</p>
<table class="summary"><thead><tr><th>vector</th>{head}<th>total</th></tr></thead><tbody>{vectors}</tbody></table>
<h2>Controls</h2>
<table class="results"><thead><tr><th>control</th><th>vector</th><th>title</th><th>status</th><th>evidence</th></tr>
</thead><tbody>{rows}</tbody></table>
</body>
</html>
"""
