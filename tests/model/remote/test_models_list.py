"""`symergion models list` with a checkpoint on a real model server."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from symergion.cli.app import app
from tests.helpers.server import Server, endpoint_config

runner = CliRunner()


def test_an_endpoint_is_listed_with_the_model_it_serves(
    tmp_path: Path, llama_server: Server, gguf_path: Path
) -> None:
    config = endpoint_config(tmp_path, llama_server.endpoint)
    result = runner.invoke(app, ["models", "list", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{llama_server.endpoint} serves {gguf_path}" in result.output

    as_json = runner.invoke(app, ["models", "list", "--config", str(config), "--json"])
    (entry,) = [m for m in json.loads(as_json.stdout)["models"] if m["source"] == "config"]
    assert entry["status"] == "ok"
    assert entry["served_model"] == str(gguf_path)
