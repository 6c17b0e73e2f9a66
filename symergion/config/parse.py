"""Validate a decoded JSON config, section by section; every error names the offending field.

``parse_config`` checks the top-level options and hands each section to its own function:
checkpoints (with their endpoint, sampling, reasoning and adapter fields), templates (with their
``verify`` and ``guided`` specs). Errors come in the order of that walk, so a config with
several faults always reports the same one first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from symergion.config.sampling import SAMPLING_KEYS, Sampling
from symergion.config.schema import (
    DEFAULT_CONFIG,
    EXTRA_BUFFERS_CHOICES,
    TASK_BRANCH_SPEC,
    UNITTEST_KIND,
    Checkpoint,
    Config,
    GuideSpec,
    Template,
    VerifySpec,
)
from symergion.errors import ConfigError

# Builds the error for a field: fail(fieldname, problem, fix).
Fail = Callable[[str, str, str], ConfigError]

_VERIFY_KEYS = ("command", "timeout", "coverage", "runs", "prune", "repair_rounds")
_GUIDE_KEYS = ("targets", "variants")
_CHECKPOINT_KEYS = {
    "name_or_path", "trait", "name", "context_size", "sampling",
    "reasoning_start_tokens", "reasoning_stop_tokens", "reasoning_markers", "endpoint",
    "lora", "lora_scale", "samples",
}
# extra_buffers, allow_destinations and max_seconds are not in DEFAULT_CONFIG: the original
# format has no such fields.
_TOP_LEVEL_KEYS = set(DEFAULT_CONFIG) | {"models_dir", "extra_buffers", "allow_destinations", "max_seconds"}


@dataclass(frozen=True)
class _Fields:
    """Checks the values of one config; each error names the file, when there is one, and the field."""

    where: str

    def fail(self, fieldname: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.where}{fieldname}: {problem}", hint=fix)

    def string(self, value: Any, fieldname: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(fieldname, f"expected a non-empty string, got {json.dumps(value)}",
                            f"set {fieldname} to a string")
        return value

    def pattern(self, value: Any, fieldname: str, groups: int = 1) -> str:
        import regex  # only validation needs it; keeps `symergion --help` imports small

        text = self.string(value, fieldname)
        try:
            compiled = regex.compile(text)
        except regex.error as exc:
            raise self.fail(fieldname, f"invalid regular expression: {exc}",
                            "fix the pattern (backslashes must be doubled in JSON)") from None
        if compiled.groups < groups:
            raise self.fail(fieldname, "the pattern needs a capturing group for the value",
                            "wrap the value part in ( ... )")
        return text


def parse_config(
    raw: Any, *, base_dir: Path, models_dir: Path | None = None, source: Path | None = None
) -> Config:
    """Validate a decoded JSON config; every error names the offending field.

    Args:
        raw: the decoded JSON.
        base_dir: the directory relative ``models_dir`` and model paths resolve against.
        models_dir: an explicit models directory (``--models``), which wins over the file's.
        source: the file the config came from, named in errors.
    """
    fields = _Fields(f"{source}: " if source else "")
    if not isinstance(raw, dict):
        raise fields.fail("(top level)", "expected a JSON object", 'wrap the settings in { ... }')
    for key in raw:
        if key not in _TOP_LEVEL_KEYS:
            raise fields.fail(key, "unknown field",
                              f"remove it, or use one of: {', '.join(sorted(_TOP_LEVEL_KEYS))}")
    if models_dir is None:
        declared = Path(fields.string(raw.get("models_dir", "."), "models_dir")).expanduser()
        models_dir = declared if declared.is_absolute() else base_dir / declared
    checkpoints = _parse_checkpoints(raw.get("checkpoints", DEFAULT_CONFIG["checkpoints"]), fields)
    templates = _parse_templates(raw.get("templates", DEFAULT_CONFIG["templates"]), fields)
    extra_buffers = _parse_extra_buffers(raw.get("extra_buffers", "auto"), fields)
    max_seconds = _parse_max_seconds(raw.get("max_seconds"), fields)
    return Config(
        idle_cores=_integer(raw, "idle_cores", 0, fields),
        model_cache_size=_integer(raw, "model_cache_size", 1, fields),
        response_cache_size=_integer(raw, "response_cache_size", 1, fields),
        ntokens=_integer(raw, "ntokens", 1, fields),
        default_branch=fields.string(raw.get("default_branch", "main"), "default_branch"),
        task_branch_spec=fields.pattern(raw.get("task_branch_spec", TASK_BRANCH_SPEC), "task_branch_spec"),
        checkpoints=checkpoints,
        templates=templates,
        models_dir=models_dir,
        source=source,
        extra_buffers=extra_buffers,
        allow_destinations=_patterns(raw.get("allow_destinations", []), fields.fail),
        max_seconds=max_seconds,
    )


def _integer(raw: dict[str, Any], key: str, minimum: int, fields: _Fields) -> int:
    """Return a top-level whole-number option, its default when absent."""
    value = raw.get(key, DEFAULT_CONFIG[key])
    if isinstance(value, bool) or not isinstance(value, int):
        raise fields.fail(key, f"expected an integer, got {json.dumps(value)}", f"set {key} to a number")
    if value < minimum:
        raise fields.fail(key, f"must be at least {minimum}, got {value}", f"set {key} >= {minimum}")
    return value


def _parse_extra_buffers(value: Any, fields: _Fields) -> str:
    """Return ``extra_buffers``: whether llama.cpp may use its extra buffer types."""
    if value not in EXTRA_BUFFERS_CHOICES:
        raise fields.fail("extra_buffers", f"expected \"auto\", \"on\" or \"off\", got {json.dumps(value)}",
                          "use \"auto\" (probe once per machine), \"on\" or \"off\"")
    return str(value)


def _parse_max_seconds(value: Any, fields: _Fields) -> float | None:
    """Return ``max_seconds``, each branch's time budget in a pass; ``None``: no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise fields.fail("max_seconds", f"expected a number of seconds above 0, got {json.dumps(value)}",
                          "set max_seconds to e.g. 60, or null for no limit")
    return float(value)


def _patterns(value: Any, fail: Fail) -> tuple[str, ...]:
    """Return ``allow_destinations``: glob patterns of protected paths a task may write."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail("allow_destinations", "expected a list of path patterns",
                   'e.g. [".github/workflows/generated-*.yml"]')
    return tuple(value)


def _parse_checkpoints(value: Any, fields: _Fields) -> tuple[Checkpoint, ...]:
    """Return the ``checkpoints`` section: at least one coder, each with a usable branch name."""
    import regex  # only validation needs it; keeps `symergion --help` imports small

    if not isinstance(value, list) or not value:
        raise fields.fail("checkpoints", "expected a non-empty list of checkpoints",
                          'add at least one {"name_or_path": "model.gguf", "trait": "coding"}')
    checkpoints = tuple(_parse_checkpoint(item, f"checkpoints[{i}]", fields) for i, item in enumerate(value))
    if not any(c.trait == "coding" for c in checkpoints):
        raise fields.fail("checkpoints", "no checkpoint has the trait \"coding\"",
                          "add a base model with \"trait\": \"coding\"")
    names = [c.model_name for c in checkpoints]
    for name in names:
        if names.count(name) > 1:
            raise fields.fail("checkpoints", f"two checkpoints share the branch name {name!r}",
                              "give one of them a distinct \"name\"")
        # ".." anywhere makes every branch name <model>_<task> one git refuses.
        if (not regex.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]*", name) or name.endswith(".lock")
                or ".." in name):
            raise fields.fail("checkpoints", f"model name {name!r} cannot be used in a branch name",
                              'set "name" to letters, digits, ".", "_" or "-", without ".."')
    return checkpoints


def _parse_checkpoint(item: Any, fieldname: str, fields: _Fields) -> Checkpoint:
    """Return one checkpoint; its fields are checked in the order the errors should come."""
    fail = fields.fail
    if not isinstance(item, dict):
        raise fail(fieldname, "expected an object", 'use {"name_or_path": "...", "trait": "coding"}')
    for key in item:
        if key not in _CHECKPOINT_KEYS:
            raise fail(f"{fieldname}.{key}", "unknown field",
                       f"remove it, or use one of: {', '.join(sorted(_CHECKPOINT_KEYS))}")
    name_or_path, endpoint, served_model = _parse_location(item, fieldname, fields)
    trait = item.get("trait")
    if trait not in ("coding", "reasoning"):
        raise fail(f"{fieldname}.trait", f"expected \"coding\" or \"reasoning\", got {json.dumps(trait)}",
                   "use \"coding\" for base models and \"reasoning\" for thinking chat models")
    name = item.get("name")
    if name is not None:
        name = fields.string(name, f"{fieldname}.name")
    context_size = item.get("context_size")
    if context_size is not None and (
        isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 256
    ):
        raise fail(f"{fieldname}.context_size", f"expected an integer >= 256, got {context_size!r}",
                   "set it to the context length to allocate, e.g. 8192")
    sampling = _parse_sampling(item.get("sampling", {}), f"{fieldname}.sampling", fail)
    markers, start, stop = _parse_reasoning(item, fieldname, fail)
    lora, lora_scale = _parse_lora(item, fieldname, fail)
    samples = _parse_samples(item.get("samples", 1), sampling, f"{fieldname}.samples", fail)
    if trait == "reasoning" and not stop and markers is None:
        raise fail(fieldname, "a reasoning checkpoint needs reasoning_stop_tokens or reasoning_markers",
                   "run `symergion models info` on the GGUF to see its thinking markers")
    return Checkpoint(
        name_or_path=name_or_path,
        trait=trait,
        name=name,
        context_size=context_size,
        sampling=sampling,
        reasoning_start_tokens=start,
        reasoning_stop_tokens=stop,
        reasoning_markers=markers,
        lora=lora,
        lora_scale=lora_scale,
        endpoint=endpoint,
        served_model=served_model,
        samples=samples,
    )


def _parse_location(
    item: dict[str, Any], fieldname: str, fields: _Fields
) -> tuple[str, str | None, str | None]:
    """Return where a checkpoint's model is: its ``name_or_path``, its endpoint and served model.

    For a model server the ``name_or_path`` is the endpoint, then ``#`` and the served model
    when the config names one (see ``Checkpoint``).
    """
    if "endpoint" not in item:
        return fields.string(item.get("name_or_path"), f"{fieldname}.name_or_path"), None, None
    endpoint = parse_endpoint(fields.string(item["endpoint"], f"{fieldname}.endpoint"),
                              f"{fieldname}.endpoint", fields.fail)
    if item.get("name_or_path") is None and item.get("name") is None:
        raise fields.fail(f"{fieldname}.name", "a checkpoint with only an endpoint needs a name",
                          'add "name": "..." (used in branch names), or "name_or_path" with '
                          "the model the server serves")
    if item.get("name_or_path") is None:
        return endpoint, endpoint, None
    served_model = fields.string(item["name_or_path"], f"{fieldname}.name_or_path")
    return f"{endpoint}#{served_model}", endpoint, served_model


def _parse_sampling(value: Any, fieldname: str, fail: Fail) -> Sampling:
    """Return a checkpoint's ``sampling`` object; the settings it leaves out keep their defaults."""
    if not isinstance(value, dict):
        raise fail(fieldname, "expected an object", 'e.g. {"temperature": 0.2}')
    values: dict[str, Any] = {}
    for key, item in value.items():
        kind = SAMPLING_KEYS.get(key)
        if kind is None:
            raise fail(f"{fieldname}.{key}", "unknown sampling setting",
                       f"use one of: {', '.join(SAMPLING_KEYS)}")
        if isinstance(item, bool) or not isinstance(item, (int, float)) or (
            kind is int and not isinstance(item, int)
        ):
            raise fail(f"{fieldname}.{key}", f"expected a number, got {json.dumps(item)}",
                       f"set {key} to a {kind.__name__}")
        values[key] = kind(item)
    return Sampling(**values)


def _parse_reasoning(
    item: dict[str, Any], fieldname: str, fail: Fail
) -> tuple[tuple[str, str] | None, tuple[int, ...], tuple[int, ...]]:
    """Return a checkpoint's thinking markers, then its reasoning start and stop token ids."""

    def token_list(key: str) -> tuple[int, ...]:
        value = item.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            raise fail(f"{fieldname}.{key}", "expected a list of token ids",
                       "list integers, e.g. [151667, 198]; `symergion models info` suggests them")
        return tuple(value)

    markers_raw = item.get("reasoning_markers")
    markers: tuple[str, str] | None = None
    if markers_raw is not None:
        if not (isinstance(markers_raw, list) and len(markers_raw) == 2
                and all(isinstance(m, str) and m for m in markers_raw)):
            raise fail(f"{fieldname}.reasoning_markers", "expected two strings",
                       'e.g. ["<think>", "</think>"]')
        markers = (markers_raw[0], markers_raw[1])
    return markers, token_list("reasoning_start_tokens"), token_list("reasoning_stop_tokens")


def _parse_samples(value: Any, sampling: Sampling, fieldname: str, fail: Fail) -> int:
    """Return how many candidates a checkpoint generates per prompt; more than one needs sampling."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(fieldname, f"expected an integer >= 1, got {json.dumps(value)}",
                   "set samples to how many candidates to generate per prompt, e.g. 4")
    if value > 1 and sampling.temperature <= 0.0:
        raise fail(fieldname, "several samples need a temperature above 0 "
                   "(greedy decoding gives the same text every time)",
                   'add e.g. "sampling": {"temperature": 0.7}, or set samples to 1')
    return value


def _parse_lora(item: dict[str, Any], fieldname: str, fail: Fail) -> tuple[str | None, float]:
    lora = item.get("lora")
    scale = item.get("lora_scale", 1.0)
    if lora is not None and (not isinstance(lora, str) or not lora.strip()):
        raise fail(f"{fieldname}.lora", f"expected the path of a GGUF adapter, got {json.dumps(lora)}",
                   'e.g. "lora": "adapters/my-coder-lora.gguf" (absolute, relative to the models '
                   "directory, or hf://ORG/REPO/FILE.gguf)")
    if isinstance(lora, str) and lora.startswith("embedded:"):
        raise fail(f"{fieldname}.lora", "an embedded model cannot be an adapter",
                   "point lora at a GGUF adapter file made by scripts/finetune/finetune.py")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise fail(f"{fieldname}.lora_scale", f"expected a number, got {json.dumps(scale)}",
                   "set it to how strongly the adapter applies, e.g. 1.0 (0 switches it off)")
    if lora is None and "lora_scale" in item:
        raise fail(f"{fieldname}.lora_scale", "lora_scale without lora",
                   'add "lora": "ADAPTER.gguf" to this checkpoint, or remove lora_scale')
    return lora, float(scale)


def parse_endpoint(text: str, fieldname: str, fail: Fail) -> str:
    """Return a model server's base URL, normalised: no trailing ``/`` or ``/v1``."""
    example = 'e.g. "http://127.0.0.1:8080" (the address llama-server listens on)'
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise fail(fieldname, f"not a URL: {exc}", example) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(fieldname, f"expected http://HOST:PORT, got {json.dumps(text)}", example)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise fail(fieldname, "a query, fragment or user name cannot be part of the endpoint",
                   f"give only scheme, host, port and path, {example}")
    path = parts.path.rstrip("/")
    # OpenAI clients are configured with ".../v1"; symergion adds the API paths itself.
    path = path.removesuffix("/v1")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:
        netloc = f"[{parts.hostname}]" + (f":{port}" if port is not None else "")
    return f"{parts.scheme}://{netloc}{path}"


def _parse_templates(value: Any, fields: _Fields) -> dict[str, Template]:
    """Return the ``templates`` section: at least one task type, by name."""
    if not isinstance(value, dict) or not value:
        raise fields.fail("templates", "expected a non-empty object of templates",
                          'add e.g. "TestCase": {"params": {...}, "call_to_action": "..."}')
    return {name: _parse_template(name, item, fields) for name, item in value.items()}


def _parse_template(name: str, item: Any, fields: _Fields) -> Template:
    """Return one template: its note parameters, its prompt's ends, and how its output is checked."""
    fname = f"templates.{name}"
    if not isinstance(item, dict):
        raise fields.fail(fname, "expected an object", "give params, call_to_action, code_starter")
    params_raw = item.get("params")
    if not isinstance(params_raw, dict) or "destination" not in params_raw:
        raise fields.fail(f"{fname}.params", "expected an object with at least a \"destination\" pattern",
                          'add "destination": "destination:[\\\\s]*([\\\\p{L}\\\\p{N}_\\\\-\\\\.\\\\/]+)"')
    params = {k: fields.pattern(v, f"{fname}.params.{k}") for k, v in params_raw.items()}
    code_starter = item.get("code_starter", "")
    if not isinstance(code_starter, str):
        raise fields.fail(f"{fname}.code_starter", "expected a string", "set it to a string or remove it")
    verify = _parse_verify(item.get("verify"), f"{fname}.verify", fields.fail)
    guided = _parse_guided(item.get("guided"), f"{fname}.guided", fields.fail)
    if guided is not None and (verify is None or "source" not in params):
        raise fields.fail(f"{fname}.guided", "guided generation needs a \"source\" parameter and a "
                          "\"verify\" section: it writes tests of the source and relies on running them",
                          'add "verify": {} (and a "source" pattern to "params"), or remove "guided"')
    if guided is not None and verify is not None and verify.kind != UNITTEST_KIND:
        raise fields.fail(f"{fname}.guided", "guided generation writes unittest files, and this "
                          f"template's verify command ({verify.command!r}) does not run them",
                          'remove "guided", or verify with "python -m unittest {module}"')
    return Template(
        name=name,
        params=params,
        call_to_action=fields.string(item.get("call_to_action"), f"{fname}.call_to_action"),
        code_starter=code_starter,
        verify=verify,
        guided=guided,
    )


def _parse_verify(value: Any, fieldname: str, fail: Fail) -> VerifySpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail(fieldname, "expected an object",
                   'e.g. {"command": "python -m unittest {module}", "timeout": 60}')
    for key in value:
        if key not in _VERIFY_KEYS:
            raise fail(f"{fieldname}.{key}", "unknown field",
                       f"remove it, or use one of: {', '.join(_VERIFY_KEYS)}")
    spec = VerifySpec()
    command = value.get("command", spec.command)
    if not isinstance(command, str) or not command.strip():
        raise fail(f"{fieldname}.command", f"expected a non-empty string, got {json.dumps(command)}",
                   'e.g. "python -m unittest {module}"; placeholders: {python} {module} '
                   "{destination} {destination_module} {source} {source_module}")
    timeout = value.get("timeout", spec.timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise fail(f"{fieldname}.timeout", f"expected a number of seconds > 0, got {json.dumps(timeout)}",
                   "set timeout to e.g. 60")

    def flag(key: str, default: bool) -> bool:
        item = value.get(key, default)
        if not isinstance(item, bool):
            raise fail(f"{fieldname}.{key}", f"expected true or false, got {json.dumps(item)}",
                       f"set {key} to true or false")
        return item

    def count(key: str, default: int, minimum: int) -> int:
        item = value.get(key, default)
        if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
            raise fail(f"{fieldname}.{key}", f"expected an integer >= {minimum}, got {json.dumps(item)}",
                       f"set {key} to a whole number >= {minimum}")
        return item

    return VerifySpec(
        command=command,
        timeout=float(timeout),
        coverage=flag("coverage", spec.coverage),
        runs=count("runs", spec.runs, 1),
        prune=flag("prune", spec.prune),
        repair_rounds=count("repair_rounds", spec.repair_rounds, 0),
    )


def _parse_guided(value: Any, fieldname: str, fail: Fail) -> GuideSpec | None:
    """Return a template's ``guided`` section: false or absent, true (the defaults), or an object."""
    if value is None or value is False:
        return None
    if value is True:
        return GuideSpec()
    if not isinstance(value, dict):
        raise fail(fieldname, f"expected true, false or an object, got {json.dumps(value)}",
                   'e.g. "guided": true, or "guided": {"variants": 2, "targets": 12}')
    spec = GuideSpec()
    values: dict[str, int] = {}
    for key, item in value.items():
        default = getattr(spec, key, None) if key in _GUIDE_KEYS else None
        if default is None:
            raise fail(f"{fieldname}.{key}", "unknown field",
                       f"remove it, or use one of: {', '.join(_GUIDE_KEYS)}")
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise fail(f"{fieldname}.{key}", f"expected an integer >= 1, got {json.dumps(item)}",
                       f"set {key} to a whole number >= 1")
        values[key] = item
    return GuideSpec(**values)
