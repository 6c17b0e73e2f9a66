"""`symergion models list` with a checkpoint on a model server that is down."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from symergion.cli.app import app
from tests.helpers.server import endpoint_config, free_port

runner = CliRunner()


def test_a_down_endpoint_is_listed_with_the_fix(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = endpoint_config(tmp_path, endpoint)
    result = runner.invoke(app, ["models", "list", "--config", str(config)])
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert endpoint in result.output
    assert "fix: start the server" in result.output

    as_json = runner.invoke(app, ["models", "list", "--config", str(config), "--json"])
    (entry,) = [m for m in json.loads(as_json.stdout)["models"] if m["source"] == "config"]
    assert entry["status"] == "unreachable"
    assert entry["endpoint"] == endpoint
    assert entry["branch_name"] == "remote"
