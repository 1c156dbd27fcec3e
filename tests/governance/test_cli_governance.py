from __future__ import annotations

import json

from typer.testing import CliRunner

from memkern import MemOS
from memkern.cli.main import app


def test_cli_audit_and_bench_guard(tmp_path, embedder):
    db = tmp_path / "cli.db"
    with MemOS(db, embedder=embedder, llm=None) as mos:
        user = mos.create_user("Ann", "admin", user_id="u-ann")
        cube = mos.as_user(user).create_cube("notes")
        cube.add(text="a private note about tulips", kind="document")
    runner = CliRunner()
    out = runner.invoke(app, ["audit", "--db", str(db), "--user", "u-ann", "--json"])
    assert out.exit_code == 0, out.output
    entries = json.loads(out.output)
    assert [e["operation"] for e in entries] == ["add", "create_cube"]
    assert "tulips" not in out.output
    out = runner.invoke(app, ["audit", "--db", str(db), "--cube", "notes", "--limit", "1"])
    assert out.exit_code == 0 and "\tadd\t" in out.output
    out = runner.invoke(app, ["bench", "guard"])
    assert out.exit_code == 0 and "injections caught" in out.output
