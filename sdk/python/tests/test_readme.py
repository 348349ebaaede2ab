"""The README example runs as written (only the gateway URL points at a local test server)."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

from conftest import SDK_ROOT
from test_client import OK_BODY, server  # noqa: F401  (pytest fixture)


def readme_example() -> str:
    text = (SDK_ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "README has no python example"
    return match.group(1)


def test_example_is_about_ten_lines() -> None:
    assert 8 <= len(readme_example().strip().splitlines()) <= 12


def test_readme_example_runs(server, golden: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    url, script = server
    script.add(200, OK_BODY)
    script.add(200, dict(OK_BODY, pcs_id="x"))
    shutil.copy(golden / "tiny_case_1.csv", tmp_path / "events.csv")
    monkeypatch.chdir(tmp_path)
    code = readme_example().replace("http://127.0.0.1:8080", url)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("{'accepted': True, 'escalated': False")
    assert lines[1].startswith("Accepted Outcome(accepted=True")
    assert script.requests[0]["headers"]["X-Tenant-Id"] == "acme"
    assert script.requests[1]["path"].startswith("/v1/pcs/")
