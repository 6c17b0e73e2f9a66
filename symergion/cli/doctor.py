"""`symergion doctor`: what a bug report needs."""

from __future__ import annotations

from typing import Any

import typer

from symergion.cli.options import ConfigOpt, JsonOpt, ModelsOpt
from symergion.cli.output import emit_json


def register(app: typer.Typer) -> None:
    """Add the doctor command to ``app``."""
    app.command("doctor")(doctor)


def doctor(config: ConfigOpt = None, models: ModelsOpt = None, as_json: JsonOpt = False) -> None:
    """Show the CPU, the llama.cpp build, the extra-buffer decision, git, the models, what the
    templates' tests need, and the cache.

    Exits with 1 when it finds a problem; each problem is listed with its fix.
    """
    from symergion.app.doctor import diagnose

    report = diagnose(config, models)
    if as_json:
        emit_json(report.as_dict())
    else:
        for line in render(report.as_dict()):
            typer.echo(line)
    if report.problems:
        raise typer.Exit(1)


def render(data: dict[str, Any]) -> list[str]:
    """Return the report as plain lines."""
    cpu, build, extra = data["cpu"], data["llama_cpp"], data["extra_buffers"]
    lines = [
        f"symergion     python {data['symergion']['python']} on {data['symergion']['platform']}",
        f"cpu           {cpu['model']} ({cpu['machine']}, {cpu['cores']} cores)",
        f"features      {' '.join(cpu['features']) or '-'}",
    ]
    if "error" in build:
        lines.append(f"llama.cpp     cannot be imported: {build['error']}")
    else:
        lines.append(f"llama.cpp     llama-cpp-python {build['llama_cpp']}")
        lines.append(f"              {build['system_info']}")
    if "error" in extra:
        lines.append(f"extra buffers {extra['error']}")
    else:
        decision = extra["decision"] or "undecided"
        lines.append(f"extra buffers {decision} (setting {extra['setting']} from {extra['source']}): "
                     f"{extra['reason']}")
    git = data["git"]
    lines.append(f"git           {git.get('version') or git.get('error')}")
    config = data["config"]
    if "error" in config:
        lines.append(f"config        {config['error']}")
    else:
        lines.append(f"config        {config['file'] or 'built-in default'}; models directory "
                     f"{config['models_dir']}; {config['threads']} threads")
        for model in config["models"]:
            where = model["path"] or model["problem"]
            lines.append(f"  {model['name']:<20} {model['trait']:<10} {model['status']:<11} {where}")
            if model["fix"]:
                lines.append(f"  {'':<20} fix: {model['fix']}")
    tests = data["tests"]
    packages = [f"{name} {tests[name] or 'MISSING'}" for name in ("pytest", "coverage") if name in tests]
    lines.append(f"tests         kinds {', '.join(tests['kinds']) or '-'}"
                 + (f"; {', '.join(packages)}" if packages else ""))
    cache = data["cache"]
    lines.append(f"cache         {cache['path']}: {cache['bytes'] / 1e6:.1f} MB in {cache['files']} "
                 f"files, {'writable' if cache['writable'] else 'NOT writable'}")
    for problem in data["problems"]:
        lines.append(f"problem: {problem}")
    return lines
