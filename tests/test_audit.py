"""scripts/audit (`make audit`): the real script, run on scratch locks, reports and ignore files.

pip-audit reads PyPI's per-version page (https://pypi.org/pypi/NAME/VERSION/json). Where PyPI
answers 404 for it, the script falls back to the project page (https://pypi.org/pypi/NAME/json),
whose advisories are those of the latest release.

The tests marked slow need PyPI. Those on a scratch lock pinning ecdsa at its latest release
(CVE-2024-23342, which has no fix) work either way: through pip-audit, or through the project
page. Those pinning jinja2 2.10 (an old release, CVE-2019-10906 among others) need the per-version
page; they skip, saying why, where PyPI answers 404 for it (there `make audit` reports jinja2
2.10 as not checked, exit status 4). The others judge a saved pip-audit report, with a stand-in
for PyPI's project pages on 127.0.0.1 where needed, or fail before any lookup: no network.
"""

from __future__ import annotations

import datetime
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "audit"

TODAY = datetime.date.today()
FUTURE = TODAY + datetime.timedelta(days=90)
PAST = TODAY - datetime.timedelta(days=1)

# Real `pip-audit --locked DIR -s pypi -f json` output (2026-12-01) for ecdsa 0.19.2, whose
# advisory has no fix, and six; description shortened. pip-audit really lists it twice.
ECDSA_VULN = {
    "id": "PYSEC-2026-1325",
    "fix_versions": [],
    "aliases": ["GHSA-wj6h-64fc-37mp", "CVE-2024-23342"],
    "description": "python-ecdsa has been found to be subject to a Minerva timing attack on "
    "the P-256 curve.",
}
ECDSA_REPORT: dict[str, Any] = {
    "dependencies": [
        {"name": "ecdsa", "version": "0.19.2", "vulns": [ECDSA_VULN, ECDSA_VULN]},
        {"name": "six", "version": "1.17.0", "vulns": []},
    ],
    "fixes": [],
}

# PyPI's project page for ecdsa (2026-12-01): the same advisory twice, once per database, each
# naming the other as an alias; details shortened, "releases" and "urls" emptied.
ECDSA_DETAILS = (
    "python-ecdsa has been found to be subject to a Minerva timing attack on the P-256 curve."
)
ECDSA_ADVISORIES: list[dict[str, Any]] = [
    {
        "aliases": ["CVE-2024-23342", "GHSA-wj6h-64fc-37mp"],
        "details": ECDSA_DETAILS,
        "fixed_in": [],
        "id": "PYSEC-2026-1325",
        "link": "https://osv.dev/vulnerability/PYSEC-2026-1325",
        "source": "osv",
        "summary": None,
        "withdrawn": None,
    },
    {
        "aliases": ["CVE-2024-23342", "PYSEC-2026-1325"],
        "details": ECDSA_DETAILS,
        "fixed_in": [],
        "id": "GHSA-wj6h-64fc-37mp",
        "link": "https://osv.dev/vulnerability/GHSA-wj6h-64fc-37mp",
        "source": "osv",
        "summary": None,
        "withdrawn": None,
    },
]
WITHDRAWN = {
    "aliases": [],
    "details": "withdrawn: not a vulnerability after all",
    "fixed_in": ["0.19.3"],
    "id": "GHSA-0000-0000-0000",
    "summary": None,
    "withdrawn": "2026-01-01T00:00:00Z",
}
PROJECT_JSON = "PyPI project JSON, latest release"

SCRATCH_PYPROJECT = """\
[project]
name = "audit-scratch"
version = "0"
requires-python = ">=3.11"
dependencies = [{dependency!r}]

[tool.uv]
package = false
"""
# What `uv lock` wrote for SCRATCH_PYPROJECT with six==1.17.0.
SIX_LOCK = """\
version = 1
revision = 5
requires-python = ">=3.11"

[[package]]
name = "audit-scratch"
version = "0"
source = { virtual = "." }
dependencies = [
    { name = "six" },
]

[package.metadata]
requires-dist = [{ name = "six", specifier = "==1.17.0" }]

[[package]]
name = "six"
version = "1.17.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/94/e7/b2c673351809dca68a0e064b6af791aa332cf192da575fd474ed7d6f16a2/six-1.17.0.tar.gz", hash = "sha256:ff70335d468e7eb6ec65b95b99d3a2836546063f63acc5171de367e834932a81", size = 34031, upload-time = "2024-12-04T17:35:28.174Z" }
wheels = [
    { url = "https://files.pythonhosted.org/packages/b7/ce/149a00dd41f10bc29e5921b496af8b574d8413afcd5e30dfa0ed46c2cc5e/six-1.17.0-py2.py3-none-any.whl", hash = "sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274", size = 11050, upload-time = "2024-12-04T17:35:26.475Z" },
]
"""


@functools.cache
def uv() -> str:
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(ROOT / ".tools/bin/uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no uv binary (run `make test`, which fetches one)")


def audit(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--uv", uv(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def toml_value(value: object) -> str:
    return str(value) if isinstance(value, datetime.date) else json.dumps(value)


def write_ignores(path: Path, *entries: dict[str, object]) -> Path:
    text = "# scratch\n"
    for entry in entries:
        text += "\n[[ignore]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in entry.items())
    path.write_text(text)
    return path


@pytest.fixture
def ecdsa_report(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(ECDSA_REPORT))
    return path


def project_page(name: str, latest: str, advisories: list[Any]) -> dict[str, Any]:
    """What https://pypi.org/pypi/NAME/json answers, without the parts the audit does not read."""
    return {
        "info": {"name": name, "version": latest},
        "last_serial": 1,
        "releases": {},
        "urls": [],
        "vulnerabilities": advisories,
    }


def not_found(name: str, version: str) -> dict[str, str]:
    """A package in a pip-audit report that PyPI answered 404 for (its per-version page)."""
    reason = f"Dependency not found on PyPI and could not be audited: {name} ({version})"
    return {"name": name, "skip_reason": reason}


def write_report(path: Path, *dependencies: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"dependencies": list(dependencies), "fixes": []}))
    return path


class FakePyPI:
    """PyPI's project pages on 127.0.0.1: path -> (HTTP status, JSON body), 404 otherwise."""

    def __init__(self) -> None:
        self.pages: dict[str, list[tuple[int, object]]] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                answers = fake.pages.get(self.path, [(404, {"message": "Not Found"})])
                # Each answer once, in order; the last one for good.
                status, body = answers.pop(0) if len(answers) > 1 else answers[0]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, name: str, *answers: tuple[int, object]) -> None:
        self.pages[f"/pypi/{name}/json"] = list(answers)


@pytest.fixture
def pypi() -> Iterator[FakePyPI]:
    fake = FakePyPI()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    thread.join()
    fake.server.server_close()


# No proxy for 127.0.0.1, whatever CI's environment says.
LOCAL = {"NO_PROXY": "*", "no_proxy": "*"}


def audit_report(
    report: Path, ignores: Path, pypi: str, *args: str | Path
) -> subprocess.CompletedProcess[str]:
    return audit("--report", report, "--ignore", ignores, "--pypi", pypi, *args, env=LOCAL)


def test_help_documents_the_exit_statuses() -> None:
    result = audit("--help")
    assert result.returncode == 0
    for line in (
        "Exit status:",
        "  0  every locked package",
        "  1  at least one known",
        "  4  WARNING",
    ):
        assert line in result.stdout
    assert "--status-file FILE" in result.stdout


# Judging a saved report: no network.


def test_a_finding_fails_and_is_named(tmp_path: Path, ecdsa_report: Path) -> None:
    result = audit("--report", ecdsa_report, "--ignore", write_ignores(tmp_path / "i.toml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "2 of 2 packages checked (2 by pip-audit); 1 known vulnerability (0 ignored"
        in result.stdout
    )
    line = "  ecdsa 0.19.2  PYSEC-2026-1325 (GHSA-wj6h-64fc-37mp, CVE-2024-23342)  no fixed version"
    assert result.stdout.count(line) == 1, result.stdout
    assert f"{line}\n      source: pip-audit\n" in result.stdout
    assert "Checked by pip-audit (2):\n  ecdsa 0.19.2, six 1.17.0\n" in result.stdout
    assert "FAILED: 1 known vulnerability not in" in result.stdout


@pytest.mark.parametrize("advisory", ["PYSEC-2026-1325", "GHSA-wj6h-64fc-37mp", "cve-2024-23342"])
def test_an_entry_with_a_future_date_silences_it(
    tmp_path: Path, ecdsa_report: Path, advisory: str
) -> None:
    ignores = write_ignores(
        tmp_path / "i.toml",
        {"id": advisory, "package": "ECDSA", "reason": "we never sign with ecdsa", "until": FUTURE},
    )
    result = audit("--report", ecdsa_report, "--ignore", ignores)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(1 ignored via" in result.stdout
    assert f"ignored until {FUTURE}: we never sign with ecdsa" in result.stdout
    assert result.stdout.rstrip().endswith("audit: OK")


def test_an_entry_is_valid_through_its_date_and_may_be_a_string(
    tmp_path: Path, ecdsa_report: Path
) -> None:
    ignores = write_ignores(
        tmp_path / "i.toml",
        {"id": "PYSEC-2026-1325", "reason": "r", "until": TODAY.isoformat()},
    )
    assert audit("--report", ecdsa_report, "--ignore", ignores).returncode == 0


def test_an_expired_entry_no_longer_silences_it(tmp_path: Path, ecdsa_report: Path) -> None:
    ignores = write_ignores(
        tmp_path / "i.toml",
        {"id": "GHSA-wj6h-64fc-37mp", "reason": "we never sign with ecdsa", "until": PAST},
    )
    result = audit("--report", ecdsa_report, "--ignore", ignores)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"entry expired on {PAST}" in result.stdout
    assert "(0 ignored via" in result.stdout


def test_an_entry_for_another_package_does_not_silence_it(
    tmp_path: Path, ecdsa_report: Path
) -> None:
    ignores = write_ignores(
        tmp_path / "i.toml",
        {"id": "PYSEC-2026-1325", "package": "six", "reason": "r", "until": FUTURE},
    )
    result = audit("--report", ecdsa_report, "--ignore", ignores)
    assert result.returncode == 1
    assert "entry PYSEC-2026-1325 for six matches no finding" in result.stdout


# What pip-audit skipped, looked up on (a stand-in for) PyPI's project pages: no network.


def test_a_package_at_its_latest_release_is_checked_with_the_project_page(
    tmp_path: Path, pypi: FakePyPI
) -> None:
    pypi.serve("ecdsa", (200, project_page("ECDSA", "0.19.2", [*ECDSA_ADVISORIES, WITHDRAWN])))
    pypi.serve("six", (200, project_page("six", "1.17.0", [])))
    report = write_report(
        tmp_path / "r.json", not_found("ecdsa", "0.19.2"), not_found("six", "1.17.0")
    )
    empty = write_ignores(tmp_path / "i.toml")
    result = audit_report(report, empty, pypi.url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pip-audit could not look up 2 of 2 packages" in result.stdout
    assert f"reading {pypi.url}/pypi/NAME/json for them instead" in result.stdout
    assert f"2 of 2 packages checked (2 by {PROJECT_JSON}); 1 known vulnerability" in result.stdout
    assert f"Checked by {PROJECT_JSON} (2):\n  ecdsa 0.19.2, six 1.17.0\n" in result.stdout
    # Its two entries are one advisory; the withdrawn one is none.
    line = "  ecdsa 0.19.2  PYSEC-2026-1325 (CVE-2024-23342, GHSA-wj6h-64fc-37mp)  no fixed version"
    assert f"{line}\n      source: {PROJECT_JSON}\n      {ECDSA_DETAILS}\n" in result.stdout
    assert result.stdout.count("ecdsa 0.19.2  ") == 1, result.stdout
    assert "GHSA-0000-0000-0000" not in result.stdout
    assert "NOT checked" not in result.stdout
    assert sorted(pypi.requests) == ["/pypi/ecdsa/json", "/pypi/six/json"]

    # Project-page findings go through the ignore file like any other.
    ignores = write_ignores(
        tmp_path / "f.toml",
        {"id": "GHSA-wj6h-64fc-37mp", "package": "ecdsa", "reason": "no signing", "until": FUTURE},
    )
    result = audit_report(report, ignores, pypi.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(1 ignored via" in result.stdout
    assert result.stdout.rstrip().endswith("audit: OK")
    ignores = write_ignores(
        tmp_path / "p.toml",
        {"id": "CVE-2024-23342", "reason": "no signing", "until": PAST},
    )
    result = audit_report(report, ignores, pypi.url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"entry expired on {PAST}" in result.stdout


def test_a_package_below_its_latest_release_is_not_checked_and_warns(
    tmp_path: Path, pypi: FakePyPI
) -> None:
    # numpy is locked twice (one version per Python), as in our uv.lock; the page has advisories
    # for the latest release, which say nothing about the older one.
    fixed = {**ECDSA_ADVISORIES[1], "id": "GHSA-1111-2222-3333", "aliases": [], "fixed_in": ["9"]}
    pypi.serve("numpy", (200, project_page("numpy", "2.5.5", [])))
    pypi.serve("six", (200, project_page("six", "1.17.0", [fixed])))
    report = write_report(
        tmp_path / "r.json",
        {"name": "markupsafe", "version": "3.0.4", "vulns": []},
        not_found("numpy", "2.4.6"),
        not_found("numpy", "2.5.5"),
        not_found("six", "1.16.0"),
    )
    status = tmp_path / "status"
    ignores = write_ignores(
        tmp_path / "i.toml",
        {"id": "GHSA-1111-2222-3333", "package": "six", "reason": "r", "until": FUTURE},
    )
    result = audit_report(report, ignores, pypi.url, "--status-file", status)
    assert result.returncode == 4, result.stdout + result.stderr
    assert status.read_text() == "4\n"
    assert (
        f"2 of 4 packages checked (1 by pip-audit, 1 by {PROJECT_JSON}), 2 NOT checked; "
        "0 known vulnerabilities" in result.stdout
    )
    assert "Checked by pip-audit (1):\n  markupsafe 3.0.4\n" in result.stdout
    assert f"Checked by {PROJECT_JSON} (1):\n  numpy 2.5.5\n" in result.stdout
    assert (
        "NOT checked, not locked at their latest release (2):\n"
        "  numpy 2.4.6  (latest release: 2.5.5)\n"
        "  six 1.16.0  (latest release: 1.17.0)\n"
    ) in result.stdout
    assert "GHSA-1111-2222-3333" not in result.stdout.split("note:")[0]  # not a finding
    assert "but six was not checked (below): keep it" in result.stdout
    assert (
        "audit: WARNING: 2 of 4 packages NOT checked for known vulnerabilities: "
        "numpy 2.4.6, six 1.16.0." in result.stdout
    )
    assert "FAILED" not in result.stdout
    assert pypi.requests.count("/pypi/numpy/json") == 1  # once per project


def test_a_finding_fails_even_with_packages_not_checked(tmp_path: Path, pypi: FakePyPI) -> None:
    pypi.serve("ecdsa", (200, project_page("ecdsa", "0.19.2", ECDSA_ADVISORIES)))
    pypi.serve("six", (200, project_page("six", "1.17.0", [])))
    report = write_report(
        tmp_path / "r.json", not_found("ecdsa", "0.19.2"), not_found("six", "1.16.0")
    )
    result = audit_report(report, write_ignores(tmp_path / "i.toml"), pypi.url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: 1 known vulnerability not in" in result.stdout
    assert "(1 package NOT checked.)" in result.stdout
    assert "six 1.16.0  (latest release: 1.17.0)" in result.stdout


def test_versions_and_names_are_compared_as_pypi_does(tmp_path: Path, pypi: FakePyPI) -> None:
    pypi.serve("zope-interface", (200, project_page("zope.interface", "7.0", [])))
    report = write_report(tmp_path / "r.json", not_found("Zope_Interface", "7.0.0"))
    result = audit_report(report, write_ignores(tmp_path / "i.toml"), pypi.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "zope-interface 7.0.0" in result.stdout
    assert pypi.requests == ["/pypi/zope-interface/json"]


def test_a_passing_server_error_is_tried_again(tmp_path: Path, pypi: FakePyPI) -> None:
    pypi.serve("six", (503, {}), (200, project_page("six", "1.17.0", [])))
    report = write_report(tmp_path / "r.json", not_found("six", "1.17.0"))
    result = audit_report(report, write_ignores(tmp_path / "i.toml"), pypi.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert pypi.requests == ["/pypi/six/json"] * 2


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ([(404, {"message": "Not Found"})], "answered 404: not a project on PyPI"),
        ([(403, {})], "HTTP 403"),
        ([(500, {})] * 3, "HTTP 500 Internal Server Error (3 tries)"),
        ([(200, {"info": {"name": "six", "version": "1.17.0"}})], "no `vulnerabilities` list"),
        ([(200, project_page("four", "1.17.0", []))], "its answer is about 'four', not six"),
        ([(200, {"vulnerabilities": []})], "no info.version"),
        ([(200, project_page("six", "1.17.0", ["GHSA-x"]))], "unexpected advisory format"),
    ],
)
def test_a_failed_lookup_is_an_error_not_a_warning(
    tmp_path: Path, pypi: FakePyPI, answers: list[tuple[int, object]], message: str
) -> None:
    pypi.serve("six", *answers)
    pypi.serve("markupsafe", (200, project_page("markupsafe", "3.0.4", [])))
    report = write_report(
        tmp_path / "r.json", not_found("six", "1.17.0"), not_found("markupsafe", "3.0.4")
    )
    result = audit_report(report, write_ignores(tmp_path / "i.toml"), pypi.url)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "NOT checked, could not be looked up (1):\n  six 1.17.0: " in result.stdout
    assert message in result.stdout
    assert "FAILED: 1 of 2 packages could not be looked up" in result.stdout


def test_a_package_without_a_version_is_an_error(tmp_path: Path, pypi: FakePyPI) -> None:
    report = write_report(
        tmp_path / "r.json",
        {"name": "six", "version": "1.17.0", "vulns": []},
        {"name": "mylib", "skip_reason": "no version specified"},
    )
    result = audit_report(report, write_ignores(tmp_path / "i.toml"), pypi.url)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "  mylib (no version): pip-audit skipped it: no version specified" in result.stdout
    assert pypi.requests == []


def test_nothing_reachable_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    report = write_report(
        tmp_path / "r.json", not_found("six", "1.17.0"), not_found("markupsafe", "3.0.4")
    )
    status = tmp_path / "status"
    result = audit_report(report, write_ignores(tmp_path / "i.toml"), dead, "--status-file", status)
    assert result.returncode == 3, result.stdout + result.stderr
    assert status.read_text() == "3\n"
    assert f"  six 1.17.0: {dead}/pypi/six/json: cannot reach it: " in result.stdout
    assert "FAILED: none of the 2 packages could be checked" in result.stdout


@pytest.mark.parametrize("url", ["file:///etc", "pypi.org", "https://"])
def test_a_bad_pypi_url_is_refused(tmp_path: Path, ecdsa_report: Path, url: str) -> None:
    result = audit_report(ecdsa_report, write_ignores(tmp_path / "i.toml"), url)
    assert result.returncode == 2
    assert "is not an http(s) URL" in result.stderr


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"reason": "r", "until": FUTURE}, "entry 1: no id"),
        (
            {"id": "GHSA-aaaa-bbbb-cccc", "until": FUTURE},
            "entry 1 (GHSA-aaaa-bbbb-cccc): no reason",
        ),
        ({"id": "GHSA-aaaa-bbbb-cccc", "reason": " ", "until": FUTURE}, "no reason"),
        ({"id": "GHSA-aaaa-bbbb-cccc", "reason": "r"}, "no until date"),
        ({"id": "GHSA-aaaa-bbbb-cccc", "reason": "r", "until": "2027-13-01"}, "not a valid date"),
        ({"id": "GHSA-aaaa-bbbb-cccc", "reason": "r", "until": "next year"}, "not a valid date"),
        ({"id": "GHSA-aaaa-bbbb-cccc", "reason": "r", "until": 20270301}, "not a valid date"),
        ({"id": "a b", "reason": "r", "until": FUTURE}, "does not look like an advisory id"),
        ({"id": "GHSA-aaaa-bbbb-cccc", "reason": "r", "untill": FUTURE}, "unknown key 'untill'"),
    ],
)
def test_a_malformed_entry_is_refused(
    tmp_path: Path, ecdsa_report: Path, entry: dict[str, object], message: str
) -> None:
    result = audit("--report", ecdsa_report, "--ignore", write_ignores(tmp_path / "i.toml", entry))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "is not valid" in result.stderr
    assert result.stdout == ""  # refused before judging anything


@pytest.mark.parametrize(
    "text",
    [
        '[[ignore]]\nid = "GHSA-aaaa-bbbb-cccc"\nreason = "r"\nuntil = 2027-03-01T10:00:00\n',
        '[ignore]\nid = "GHSA-aaaa-bbbb-cccc"\n',
        'ignore = "everything"\n',
        '[[ignores]]\nid = "GHSA-aaaa-bbbb-cccc"\n',
        '[[ignore]]\nid = "GHSA-aaaa-bbbb-cccc"\nreason = "r"\nuntil = 2027-03-01\n' * 2,
        "[[ignore]\n",
    ],
)
def test_a_malformed_file_is_refused(tmp_path: Path, ecdsa_report: Path, text: str) -> None:
    ignores = tmp_path / "i.toml"
    ignores.write_text(text)
    result = audit("--report", ecdsa_report, "--ignore", ignores)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(ignores) in result.stderr


def test_the_repo_ignore_file_is_valid(ecdsa_report: Path) -> None:
    result = audit("--report", ecdsa_report)
    assert result.returncode in (0, 1), result.stderr


# Exporting a lock and asking PyPI.


def test_a_network_failure_is_an_error_not_a_pass(tmp_path: Path) -> None:
    project = tmp_path / "scratch"
    project.mkdir()
    (project / "pyproject.toml").write_text(SCRATCH_PYPROJECT.format(dependency="six==1.17.0"))
    (project / "uv.lock").write_text(SIX_LOCK)
    offline = {
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "no_proxy": "",
        "PIP_NO_CACHE_DIR": "1",  # so pip-audit cannot answer from a cache
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    result = audit(
        "--lock", project / "uv.lock", "--ignore", write_ignores(tmp_path / "i.toml"), env=offline
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "locks 1 package " in result.stdout
    assert "pip-audit could not query PyPI's vulnerability data" in result.stderr
    assert "OK" not in result.stdout


def test_a_lock_without_its_pyproject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text(SIX_LOCK)
    result = audit("--lock", tmp_path / "uv.lock", "--ignore", write_ignores(tmp_path / "i.toml"))
    assert result.returncode == 2
    assert "no pyproject.toml next to" in result.stderr


def scratch_lock(project: Path, dependency: str) -> Path:
    """uv.lock for a scratch project needing just `dependency` (uv asks PyPI's simple index)."""
    (project / "pyproject.toml").write_text(SCRATCH_PYPROJECT.format(dependency=dependency))
    subprocess.run(
        [uv(), "lock", "--quiet", "--project", str(project)],
        check=True,
        timeout=300,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    return project / "uv.lock"


# ecdsa's one advisory (also PYSEC-2026-1325, CVE-2024-23342): a timing attack its maintainers
# will not fix, so every release has it, the latest too.
ECDSA_ADVISORY = "GHSA-wj6h-64fc-37mp"


@pytest.fixture(scope="module")
def ecdsa_lock(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """A scratch lock pinning ecdsa at its latest release; that version; its advisories' ids."""
    with urllib.request.urlopen("https://pypi.org/pypi/ecdsa/json", timeout=60) as response:
        page = json.load(response)
    latest = page["info"]["version"]
    ids = [v["id"] for v in page["vulnerabilities"] if not v["withdrawn"]]
    aliases = {a for v in page["vulnerabilities"] if not v["withdrawn"] for a in v["aliases"]}
    if ECDSA_ADVISORY not in {*ids, *aliases}:
        pytest.fail(
            f"PyPI no longer lists {ECDSA_ADVISORY} for ecdsa's latest release, {latest}: "
            "pin another package whose latest release has an advisory in these tests"
        )
    project = tmp_path_factory.mktemp("ecdsa-scratch")
    return scratch_lock(project, f"ecdsa=={latest}"), latest, ids


@pytest.mark.slow
def test_a_vulnerable_latest_pin_fails_then_passes_with_dated_ignores(
    tmp_path: Path, ecdsa_lock: tuple[Path, str, list[str]]
) -> None:
    # Checked through pip-audit where PyPI serves the per-version page, through the project
    # page where it does not (as here on 2026-12-01): either way the same advisory.
    lock, version, ids = ecdsa_lock
    result = audit("--lock", lock, "--ignore", write_ignores(tmp_path / "empty.toml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "locks 2 packages" in result.stdout  # ecdsa and six
    assert "2 of 2 packages checked" in result.stdout
    assert f"  ecdsa {version}  " in result.stdout
    assert ECDSA_ADVISORY in result.stdout
    assert "CVE-2024-23342" in result.stdout
    assert f"      source: {PROJECT_JSON}\n" in result.stdout or (
        "      source: pip-audit\n" in result.stdout
    )
    assert "FAILED: 1 known vulnerability not in" in result.stdout

    # Its advisories ignored until a future date: it passes.
    entries = [{"id": i, "package": "ecdsa", "reason": "test", "until": FUTURE} for i in ids]
    result = audit("--lock", lock, "--ignore", write_ignores(tmp_path / "f.toml", *entries))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(1 ignored via" in result.stdout
    assert result.stdout.rstrip().endswith("audit: OK")

    # The same entries past their date: it fails again.
    for entry in entries:
        entry["until"] = PAST
    result = audit("--lock", lock, "--ignore", write_ignores(tmp_path / "p.toml", *entries))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"expired on {PAST}" in result.stdout


@pytest.mark.slow
def test_a_malformed_entry_stops_a_real_audit_before_it_starts(
    tmp_path: Path, ecdsa_lock: tuple[Path, str, list[str]]
) -> None:
    ignores = write_ignores(tmp_path / "i.toml", {"id": ECDSA_ADVISORY, "until": FUTURE})
    result = audit("--lock", ecdsa_lock[0], "--ignore", ignores)
    assert result.returncode == 2
    assert f"entry 1 ({ECDSA_ADVISORY}): no reason" in result.stderr
    assert result.stdout == ""


def pypi_serves_version_json() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/pypi/jinja2/2.10/json", timeout=30) as r:
            return "vulnerabilities" in json.load(r)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 404:
            return False
        raise


@pytest.fixture(scope="module")
def jinja_lock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not pypi_serves_version_json():
        pytest.skip(
            "PyPI here answers 404 for https://pypi.org/pypi/jinja2/2.10/json, the per-version "
            "API pip-audit reads (a proxy or mirror without it?); no advisory data to test with"
        )
    return scratch_lock(tmp_path_factory.mktemp("jinja-scratch"), "jinja2==2.10")


@pytest.mark.slow
def test_a_vulnerable_lock_fails_then_passes_with_dated_ignores(
    tmp_path: Path, jinja_lock: Path
) -> None:
    # (a) A lock pinning jinja2 2.10 fails, naming the advisories.
    saved = tmp_path / "report.json"
    empty = write_ignores(tmp_path / "empty.toml")
    result = audit("--lock", jinja_lock, "--ignore", empty, "--save-report", saved)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "locks 2 packages" in result.stdout  # jinja2 and markupsafe
    assert "jinja2 2.10  " in result.stdout
    assert "CVE-2019-10906" in result.stdout
    ids = sorted(
        {v["id"] for d in json.loads(saved.read_text())["dependencies"] for v in d.get("vulns", [])}
    )
    assert ids

    # (b) Every one of its ids ignored until a future date: it passes.
    entries = [{"id": i, "package": "jinja2", "reason": "test", "until": FUTURE} for i in ids]
    result = audit("--lock", jinja_lock, "--ignore", write_ignores(tmp_path / "f.toml", *entries))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"({len(ids)} ignored via" in result.stdout
    assert "CVE-2019-10906" in result.stdout  # still shown, as ignored

    # (c) The same entries past their date: it fails again.
    for entry in entries:
        entry["until"] = PAST
    result = audit("--lock", jinja_lock, "--ignore", write_ignores(tmp_path / "p.toml", *entries))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"expired on {PAST}" in result.stdout
