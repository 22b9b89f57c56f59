"""The documentation stays navigable, lists exactly the real settings and every code the handler fails with."""

import ast
import json
import re
from pathlib import Path

import pytest

from handler.clocks import Clocks
from handler.launcher import Launcher
from handler.settings import CONFIG_NAMES
from handler.wiring import Wiring
from tests.conftest import NOW, JsonLines, upload

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])

# Settings documented before the code has them: drop this set once handler.settings lists them.
# Read by Powertools itself, not by handler.settings, and listed in the same table.
PLATFORM_SETTINGS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_NAMESPACE"}

FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
EXTERNAL = ("http://", "https://", "mailto:")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and code spans, where a link is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, lower case, punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for match in HEADING.finditer(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(match["text"])
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken_links(page: Path) -> list[str]:
    broken = []
    for match in LINK.finditer(_prose(page.read_text(encoding="utf-8"))):
        target = match["target"]
        if target.startswith(EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}: [{match['text']}]({target})"
        if not resolved.exists():
            broken.append(f"{where} -> no file {path}")
        elif anchor and (resolved.suffix != ".md" or anchor not in _anchors(resolved)):
            broken.append(f"{where} -> no heading #{anchor} in {resolved.relative_to(ROOT)}")
    return broken


def test_the_pages_exist() -> None:
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert "docs/configuration.md" in names, "docs/configuration.md is missing"
    assert len(names) > 2, f"no pages in docs/: only {sorted(names)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = _broken_links(page)
    assert not broken, "broken links:\n" + "\n".join(broken)


def _table_names(page: Path) -> set[str]:
    """Names in backticks in the first column of the table headed `| name | meaning | default |`."""
    lines = page.read_text(encoding="utf-8").splitlines()
    header = re.compile(r"^\|\s*name\s*\|\s*meaning\s*\|\s*default\s*\|\s*$")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    assert start is not None, f"{page.relative_to(ROOT)} has no table headed | name | meaning | default |"
    names: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first_cell = line.split("|")[1]
        names.update(re.findall(r"`([^`]+)`", first_cell))
    return names


def test_configuration_table_lists_every_setting() -> None:
    documented = _table_names(ROOT / "docs" / "configuration.md")
    real = set(CONFIG_NAMES) | PLATFORM_SETTINGS
    missing = sorted(real - documented)
    unknown = sorted(documented - real)
    assert not missing, f"settings missing from the table in docs/configuration.md: {', '.join(missing)}"
    assert not unknown, f"names in the table of docs/configuration.md that are no setting: {', '.join(unknown)}"


def _literal_codes() -> set[str]:
    """The codes written as literals where the handler raises a RequestError or builds a step's Failed."""
    codes = set()
    for path in (ROOT / "handler").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            position = {"RequestError": 0, "step_failed": 1}.get(node.func.id)
            if position is not None and len(node.args) > position:
                code = node.args[position]
                if isinstance(code, ast.Constant) and isinstance(code.value, str):
                    codes.add(code.value)
    return codes


def test_every_code_the_handler_fails_with_is_in_the_troubleshooting_table() -> None:
    table = (ROOT / "docs" / "results.md").read_text(encoding="utf-8").split("## Troubleshooting by error code")[1]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = {code for row in rows for code in re.findall(r"`([^`]+)`", row)}
    codes = _literal_codes()
    assert {"deferred", "bad-state", "unknown-outcome"} <= codes  # the walk finds what it looks for
    assert sorted(codes - documented) == []


def test_max_running_is_documented_against_the_jobs_own_max_concurrent_runs() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    [row] = [line for line in page.splitlines() if line.startswith("| `maxRunning` |")]
    assert "`maxConcurrentRuns`" in row and "doctor" in row and "`validate` cannot read the job" in row


def test_the_logs_insights_query_for_one_files_decision_asks_for_fields_the_records_carry(logs: JsonLines) -> None:
    # "It didn't run and there is no error" ends in a query; each field it reads must be one a decision
    # record really has, and each message it filters on one the handler really writes.
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    checklist = page.split("## It didn't run and there is no error")[1].split("\n## ")[0]
    query = checklist.split("### One file's decision in CloudWatch Logs Insights")[1].split("```text\n")[1]
    query = query.split("```")[0]
    fields = [name.strip() for name in query.splitlines()[0].removeprefix("fields ").split(",")]
    messages = re.findall(r'"([^"]+)"', query.split("message in ")[1].splitlines()[0])
    routes = [
        {"name": "fires", "match": {"source": "object", "prefix": "incoming/"}, "jobId": "J1"},
        {"name": "misses", "match": {"source": "object", "suffix": ".parquet"}, "jobId": "J2"},
    ]
    config = {"DATAFLOW_ROUTES": json.dumps(routes), "DATAFLOW_DRY_RUN": "true", "DATAFLOW_DEDUP_CHECK": "off"}
    launcher = Launcher(Wiring(Clocks(wall=lambda: NOW, sleep=lambda _: None)))
    entries: list[dict[str, object]] = []  # a record leaves out what is null (a dry run's jobExecutionId)
    for event in (upload("incoming/orders/a.csv"), upload("elsewhere/a.csv"), {"Records": [{"s3": "cut off"}]}):
        result = launcher.invoke(event, config, platform="aws").result
        entries += [dict(entry) for kind in ("submitted", "skipped", "failed") for entry in result[kind]]
    records = [record for record in logs.records if record["message"] in messages]
    assert {record["message"] for record in records} == {"dry run: not sent", "skipped", "failed"}
    seen = {name for record in [*records, *entries] for name in record} | {
        f"misses.0.{name}" for record in records for name in (record.get("misses") or [{}])[0]
    }
    assert [field for field in fields if not field.startswith("@") and field not in seen] == []
    assert "submitted" in messages and 'filter @message like "' in query
