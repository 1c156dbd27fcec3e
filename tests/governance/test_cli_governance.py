from __future__ import annotations

import json

import pytest
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


def test_cli_acts_as_a_user_checked_and_audited(tmp_path, monkeypatch):
    """``--user`` and ``--api-key`` (or ``$MEMKERN_API_KEY``) run commands as a user, through the one
    enforcement point: refused without a grant, allowed with one, audited either way."""
    from memkern.embed import default_embedder
    from memkern.errors import EmbedderError

    try:
        default_embedder()
    except (EmbedderError, OSError) as exc:  # pragma: no cover - depends on the bundled model
        pytest.skip(f"the CLI's default embedder cannot be built here: {exc}")
    monkeypatch.delenv("MEMKERN_API_KEY", raising=False)
    monkeypatch.delenv("MEMKERN_LLM", raising=False)
    runner = CliRunner()
    db = ["--db", str(tmp_path / "cli.db")]

    def run(*args, code=0, env=None):
        result = runner.invoke(app, [*db, *args], env=env)
        assert result.exit_code == code, (args, result.output)
        return result

    assert json.loads(run("--json", "user", "create", "Ada", "--role", "admin", "--id", "ada").stdout)["id"] == "ada"
    run("user", "create", "Bob", "--id", "bob")
    key = run("key", "create", "bob").stdout.strip()
    assert key.startswith("mk_")
    run("--user", "ada", "cube", "create", "plans")
    run("--user", "ada", "add", "plans", "Ada plans a trip to Lisbon", "--kind", "event")
    denied = run("--api-key", key, "search", "plans", "trip", code=1)
    assert "may not search" in denied.stderr
    run("--user", "ada", "grant", "plans", "bob", "read")
    assert "Lisbon" in run("search", "plans", "trip", "--json", env={"MEMKERN_API_KEY": key}).stdout
    assert "may not add" in run("--user", "bob", "add", "plans", "Bob was here", code=1).stderr
    mine = json.loads(run("--json", "--user", "bob", "user", "whoami").stdout)
    assert mine["id"] == "bob"
    entries = json.loads(run("--json", "audit", "--user", "bob").stdout)
    assert [(e["operation"], e["result"]) for e in entries][:4] == [
        ("whoami", "allowed"), ("add", "denied"), ("search", "allowed"), ("search", "denied")]
    assert run("--user", "nobody", "cube", "list", code=1).stderr.startswith("error: ")
    assert run("--user", "ada", "--api-key", key, "cube", "list", code=2)
