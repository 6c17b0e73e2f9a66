"""Configuration: the original SymErgion JSON format plus GGUF options, and all environment reading.

The config file keeps the original's fields as they are (``idle_cores``, ``model_cache_size``,
``response_cache_size``, ``ntokens``, ``default_branch``, ``task_branch_spec``, ``checkpoints``,
``templates``). A checkpoint's ``name_or_path`` names a GGUF file: an absolute path, a path
relative to the models directory, ``hf://ORG/REPO/FILE.gguf``, or ``embedded:gemma3-270m``.
Each checkpoint may add ``name`` (used in branch names), ``context_size``, ``sampling``, a LoRA
adapter (``lora``, a GGUF adapter file resolved like ``name_or_path``, and ``lora_scale``) and, for
reasoners, ``reasoning_markers``. The top-level ``extra_buffers`` (``auto``, ``on`` or ``off``)
says whether llama.cpp may use its extra buffer types (AMX, CPU repacking); see
``symergion.engine.extra_buffers``. A checkpoint with ``endpoint`` (``http://host:port``) runs on a
model server (llama.cpp's ``llama-server`` or any OpenAI-compatible completions server); its
``name_or_path``, if given, names the model to ask that server for.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from symergion.errors import ConfigError

ENV_CONFIG = "SYMERGION_CONFIG"
ENV_MODELS = "SYMERGION_MODELS"
ENV_CACHE = "SYMERGION_CACHE_DIR"
ENV_DEBUG = "SYMERGION_DEBUG"
ENV_EXTRA_BUFFERS = "SYMERGION_EXTRA_BUFFERS"

EXTRA_BUFFERS_CHOICES = ("auto", "on", "off")
ENV_SANDBOX = "SYMERGION_SANDBOX"

EMBEDDED_MODEL = "embedded:gemma3-270m"

TASK_BRANCH_SPEC = r"task_branch:[\s]*([\p{L}\p{N}_\-\.\/]+)"
_PARAM = r":[\s]*([\p{L}\p{N}_\-\.\/]+)(?:[,;]?[\s]*|[\n]?)"

DEFAULT_CONFIG: dict[str, Any] = {
    "idle_cores": 0,
    "model_cache_size": 1,
    "response_cache_size": 100,
    "ntokens": 512,
    "default_branch": "main",
    "task_branch_spec": TASK_BRANCH_SPEC,
    "checkpoints": [
        {"name_or_path": EMBEDDED_MODEL, "name": "gemma3-270m", "trait": "coding"},
    ],
    "templates": {
        "TestCase": {
            "params": {"source": "source" + _PARAM, "destination": "destination" + _PARAM},
            "call_to_action": "Create unittest TestCase",
            # Placeholders: the module under test's import line and a class name for its tests.
            "code_starter": ("import unittest\n\n{import_module}\n\n\n"
                             "class {test_class}(unittest.TestCase):\n"),
            # Tests per public name of the source, from openers the method writes: the greedy
            # one and two sampled variants, pruned to those that add coverage (docs/quality.md).
            "guided": {"variants": 3},
            "verify": {
                "command": "python -m unittest {module}",
                "timeout": 60,
                "coverage": True,
                "runs": 2,
                "prune": True,
                "repair_rounds": 1,
            },
        }
    },
}

# The command that the structured unittest runner stands in for (per-test outcomes, coverage).
DEFAULT_VERIFY_COMMAND = "python -m unittest {module}"
_VERIFY_KEYS = ("command", "timeout", "coverage", "runs", "prune", "repair_rounds")
_GUIDE_KEYS = ("targets", "variants")

_SAMPLING_KEYS = {
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "repeat_penalty": float,
    "seed": int,
}


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; the defaults decode greedily, which makes responses reproducible."""

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, float | int]:
        """Return the settings as a plain dict (stable key order, for cache keys)."""
        return {k: getattr(self, k) for k in _SAMPLING_KEYS}


# The kinds of checkpoint (``Checkpoint.kind``); ``symergion.runtime`` registers an engine for each.
LLAMA_KIND = "llama"
REMOTE_KIND = "remote"


@dataclass(frozen=True)
class Checkpoint:
    """One model: where its GGUF (or its server) is, what it does, and how it samples.

    For a checkpoint with an ``endpoint``, ``name_or_path`` is the endpoint, followed by
    ``#`` and ``served_model`` when the config names the model to ask the server for: it
    stays unique per served model, as engine pools and caches key on it.
    """

    name_or_path: str
    trait: str
    name: str | None = None
    context_size: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    reasoning_start_tokens: tuple[int, ...] = ()
    reasoning_stop_tokens: tuple[int, ...] = ()
    reasoning_markers: tuple[str, str] | None = None
    lora: str | None = None
    lora_scale: float = 1.0
    endpoint: str | None = None
    served_model: str | None = None
    samples: int = 1  # candidates per prompt when the template verifies; the best is published

    @property
    def weights(self) -> tuple[str, str | None, float]:
        """Return what identifies the loaded weights: the model file, its adapter and scale."""
        return (self.name_or_path, self.lora, self.lora_scale)

    @property
    def kind(self) -> str:
        """Return which engine runs this checkpoint: ``"remote"`` (its ``endpoint``) or ``"llama"``.

        A ``"llama"`` checkpoint is a local GGUF that llama.cpp runs in a worker process. The
        kind follows from the fields, so a config never states it and cannot contradict it.
        """
        return REMOTE_KIND if self.endpoint is not None else LLAMA_KIND

    @property
    def model_name(self) -> str:
        """Return the name used in branch names: ``name``, else the GGUF file stem."""
        if self.name:
            return self.name
        source = self.served_model if self.kind == REMOTE_KIND else self.name_or_path
        tail = (source or "").rstrip("/").split("/")[-1].split(":")[-1]
        return tail[: -len(".gguf")] if tail.lower().endswith(".gguf") else tail


@dataclass(frozen=True)
class VerifySpec:
    """How a template's candidates are checked: the command, its limits, and what follows."""

    command: str = DEFAULT_VERIFY_COMMAND
    timeout: float = 60.0
    coverage: bool = False
    runs: int = 1
    prune: bool = False
    repair_rounds: int = 0

    @property
    def structured(self) -> bool:
        """Return whether the built-in runner (per-test outcomes) can stand in for the command."""
        return " ".join(self.command.split()) in (DEFAULT_VERIFY_COMMAND, "{python} -m unittest {module}")


@dataclass(frozen=True)
class GuideSpec:
    """Guided generation of a Python unittest file (``symergion.verify.guide``).

    The prompt gains a worked example, and the file is written one test per public name of the
    module under test, each from an opener the method writes (``docs/quality.md``).
    """

    targets: int = 12  # the most public names to write a test for
    variants: int = 1  # tests per target: the greedy one, then sampled ones


@dataclass(frozen=True)
class Template:
    """A task type: the parameters its notes carry and how its prompt starts and ends."""

    name: str
    params: dict[str, str]
    call_to_action: str
    code_starter: str = ""
    verify: VerifySpec | None = None
    guided: GuideSpec | None = None


@dataclass(frozen=True)
class Config:
    """A validated configuration."""

    idle_cores: int
    model_cache_size: int
    response_cache_size: int
    ntokens: int
    default_branch: str
    task_branch_spec: str
    checkpoints: tuple[Checkpoint, ...]
    templates: dict[str, Template]
    models_dir: Path
    source: Path | None = None
    extra_buffers: str = "auto"
    allow_destinations: tuple[str, ...] = ()  # glob patterns of CI/hook paths tasks may write
    max_seconds: float | None = None  # each branch's time budget in a pass; None: no limit

    @property
    def coders(self) -> tuple[Checkpoint, ...]:
        """Return the checkpoints with the ``coding`` trait."""
        return tuple(c for c in self.checkpoints if c.trait == "coding")

    @property
    def reasoners(self) -> tuple[Checkpoint, ...]:
        """Return the checkpoints with the ``reasoning`` trait."""
        return tuple(c for c in self.checkpoints if c.trait == "reasoning")

    def threads(self) -> int:
        """Return how many CPU threads inference may use: all cores but ``idle_cores``."""
        return max(1, (os.cpu_count() or 1) - self.idle_cores)

    def template_for(self, task_branch: str) -> Template | None:
        """Return the template whose name prefixes the task branch, the longest name first."""
        for name in sorted(self.templates, key=len, reverse=True):
            if task_branch.startswith(name):
                return self.templates[name]
        return None


def cache_dir() -> Path:
    """Return the cache directory: ``SYMERGION_CACHE_DIR``, else ``$XDG_CACHE_HOME/symergion``."""
    if env := os.environ.get(ENV_CACHE):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "symergion"


def extra_buffers_setting(config: Config | None = None) -> tuple[str, str]:
    """Return the extra-buffer setting and where it came from: the env var, the config, or neither.

    Raises:
        ConfigError: ``SYMERGION_EXTRA_BUFFERS`` is not one of auto, on, off.
    """
    env = os.environ.get(ENV_EXTRA_BUFFERS, "").strip().lower()
    if env:
        if env not in EXTRA_BUFFERS_CHOICES:
            raise ConfigError(
                f"{ENV_EXTRA_BUFFERS}={os.environ[ENV_EXTRA_BUFFERS]!r} is not one of "
                f"{', '.join(EXTRA_BUFFERS_CHOICES)}",
                hint=f"set {ENV_EXTRA_BUFFERS} to auto, on or off, or unset it",
            )
        return env, ENV_EXTRA_BUFFERS
    if config is not None and (config.source is not None or config.extra_buffers != "auto"):
        return config.extra_buffers, f"{config.source or 'config'}: extra_buffers"
    return "auto", "default"


def debug_enabled() -> bool:
    """Return whether ``SYMERGION_DEBUG`` asks for tracebacks."""
    return os.environ.get(ENV_DEBUG, "") not in ("", "0", "false", "no")


def sandbox_mode() -> str:
    """Return how candidates run: ``bwrap`` (default) or ``none`` (``SYMERGION_SANDBOX=none``)."""
    value = os.environ.get(ENV_SANDBOX, "").strip().lower() or "bwrap"
    if value not in ("bwrap", "none"):
        raise ConfigError(
            f"{ENV_SANDBOX}={value!r} is not a sandbox mode",
            hint=f"unset {ENV_SANDBOX} to use bubblewrap, or set it to \"none\" to run "
            "generated tests without isolation",
        )
    return value


def color_enabled() -> bool:
    """Return whether colour output is allowed (``NO_COLOR`` switches it off)."""
    return "NO_COLOR" not in os.environ


def load_config(path: str | Path | None = None, models_dir: str | Path | None = None) -> Config:
    """Load and validate a config.

    Args:
        path: the JSON file; ``None`` takes ``SYMERGION_CONFIG``, else the built-in default.
        models_dir: where relative model paths resolve; ``None`` takes ``SYMERGION_MODELS``,
            else the config file's directory (the current directory for the built-in default).

    Raises:
        ConfigError: the file is missing or invalid; the message names the field and the fix.
    """
    if path is None:
        path = os.environ.get(ENV_CONFIG) or None
    if models_dir is None:
        models_dir = os.environ.get(ENV_MODELS) or None
    if path is None:
        raw: Any = json.loads(json.dumps(DEFAULT_CONFIG))
        source = None
        base = Path.cwd()
    else:
        source = Path(path).expanduser()
        raw = _read_json(source)
        base = source.resolve().parent
    override = Path(models_dir).expanduser() if models_dir is not None else None
    return parse_config(raw, base_dir=base, models_dir=override, source=source)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist",
            hint=f"pass an existing file with --config or {ENV_CONFIG}, or omit both "
            "to use the built-in default",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}",
            hint="fix the JSON syntax at that line and column (a missing comma is common)",
        ) from None


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
    import regex  # only validation needs it; keeps `symergion --help` imports small

    where = f"{source}: " if source else ""

    def fail(fieldname: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{where}{fieldname}: {problem}", hint=fix)

    if not isinstance(raw, dict):
        raise fail("(top level)", "expected a JSON object", 'wrap the settings in { ... }')
    # extra_buffers, allow_destinations and max_seconds are not in DEFAULT_CONFIG: the
    # original format has no such fields.
    known = set(DEFAULT_CONFIG) | {"models_dir", "extra_buffers", "allow_destinations", "max_seconds"}
    for key in raw:
        if key not in known:
            raise fail(key, "unknown field", f"remove it, or use one of: {', '.join(sorted(known))}")

    def integer(key: str, minimum: int) -> int:
        value = raw.get(key, DEFAULT_CONFIG[key])
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(key, f"expected an integer, got {json.dumps(value)}", f"set {key} to a number")
        if value < minimum:
            raise fail(key, f"must be at least {minimum}, got {value}", f"set {key} >= {minimum}")
        return value

    def string(value: Any, fieldname: str) -> str:
        if not isinstance(value, str) or not value:
            raise fail(fieldname, f"expected a non-empty string, got {json.dumps(value)}",
                       f"set {fieldname} to a string")
        return value

    def pattern(value: Any, fieldname: str, groups: int = 1) -> str:
        text = string(value, fieldname)
        try:
            compiled = regex.compile(text)
        except regex.error as exc:
            raise fail(fieldname, f"invalid regular expression: {exc}",
                       "fix the pattern (backslashes must be doubled in JSON)") from None
        if compiled.groups < groups:
            raise fail(fieldname, "the pattern needs a capturing group for the value",
                       "wrap the value part in ( ... )")
        return text

    if models_dir is None:
        declared = Path(string(raw.get("models_dir", "."), "models_dir")).expanduser()
        models_dir = declared if declared.is_absolute() else base_dir / declared

    checkpoints_raw = raw.get("checkpoints", DEFAULT_CONFIG["checkpoints"])
    if not isinstance(checkpoints_raw, list) or not checkpoints_raw:
        raise fail("checkpoints", "expected a non-empty list of checkpoints",
                   'add at least one {"name_or_path": "model.gguf", "trait": "coding"}')
    checkpoints = tuple(
        _parse_checkpoint(item, f"checkpoints[{i}]", fail, string)
        for i, item in enumerate(checkpoints_raw)
    )
    if not any(c.trait == "coding" for c in checkpoints):
        raise fail("checkpoints", "no checkpoint has the trait \"coding\"",
                   "add a base model with \"trait\": \"coding\"")
    names = [c.model_name for c in checkpoints]
    for name in names:
        if names.count(name) > 1:
            raise fail("checkpoints", f"two checkpoints share the branch name {name!r}",
                       "give one of them a distinct \"name\"")
        # ".." anywhere makes every branch name <model>_<task> one git refuses.
        if (not regex.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]*", name) or name.endswith(".lock")
                or ".." in name):
            raise fail("checkpoints", f"model name {name!r} cannot be used in a branch name",
                       'set "name" to letters, digits, ".", "_" or "-", without ".."')

    templates_raw = raw.get("templates", DEFAULT_CONFIG["templates"])
    if not isinstance(templates_raw, dict) or not templates_raw:
        raise fail("templates", "expected a non-empty object of templates",
                   'add e.g. "TestCase": {"params": {...}, "call_to_action": "..."}')
    templates: dict[str, Template] = {}
    for tname, traw in templates_raw.items():
        fname = f"templates.{tname}"
        if not isinstance(traw, dict):
            raise fail(fname, "expected an object", "give params, call_to_action, code_starter")
        params_raw = traw.get("params")
        if not isinstance(params_raw, dict) or "destination" not in params_raw:
            raise fail(f"{fname}.params", "expected an object with at least a \"destination\" pattern",
                       'add "destination": "destination:[\\\\s]*([\\\\p{L}\\\\p{N}_\\\\-\\\\.\\\\/]+)"')
        params = {k: pattern(v, f"{fname}.params.{k}") for k, v in params_raw.items()}
        code_starter = traw.get("code_starter", "")
        if not isinstance(code_starter, str):
            raise fail(f"{fname}.code_starter", "expected a string", "set it to a string or remove it")
        verify = _parse_verify(traw.get("verify"), f"{fname}.verify", fail)
        guided = _parse_guided(traw.get("guided"), f"{fname}.guided", fail)
        if guided is not None and (verify is None or "source" not in params):
            raise fail(f"{fname}.guided", "guided generation needs a \"source\" parameter and a "
                       "\"verify\" section: it writes tests of the source and relies on running them",
                       'add "verify": {} (and a "source" pattern to "params"), or remove "guided"')
        templates[tname] = Template(
            name=tname,
            params=params,
            call_to_action=string(traw.get("call_to_action"), f"{fname}.call_to_action"),
            code_starter=code_starter,
            verify=verify,
            guided=guided,
        )

    extra_buffers = raw.get("extra_buffers", "auto")
    if extra_buffers not in EXTRA_BUFFERS_CHOICES:
        raise fail("extra_buffers", f"expected \"auto\", \"on\" or \"off\", got {json.dumps(extra_buffers)}",
                   "use \"auto\" (probe once per machine), \"on\" or \"off\"")

    max_seconds = raw.get("max_seconds")
    if max_seconds is not None and (isinstance(max_seconds, bool)
                                    or not isinstance(max_seconds, (int, float))
                                    or not 0 < max_seconds < float("inf")):
        raise fail("max_seconds", f"expected a number of seconds above 0, got {json.dumps(max_seconds)}",
                   "set max_seconds to e.g. 60, or null for no limit")

    return Config(
        idle_cores=integer("idle_cores", 0),
        model_cache_size=integer("model_cache_size", 1),
        response_cache_size=integer("response_cache_size", 1),
        ntokens=integer("ntokens", 1),
        default_branch=string(raw.get("default_branch", "main"), "default_branch"),
        task_branch_spec=pattern(raw.get("task_branch_spec", TASK_BRANCH_SPEC), "task_branch_spec"),
        checkpoints=checkpoints,
        templates=templates,
        models_dir=models_dir,
        source=source,
        extra_buffers=extra_buffers,
        allow_destinations=_patterns(raw.get("allow_destinations", []), fail),
        max_seconds=float(max_seconds) if max_seconds is not None else None,
    )


def _parse_verify(value: Any, fieldname: str, fail: Any) -> VerifySpec | None:
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


def _parse_guided(value: Any, fieldname: str, fail: Any) -> GuideSpec | None:
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


def _patterns(value: Any, fail: Any) -> tuple[str, ...]:
    """Return ``allow_destinations``: glob patterns of protected paths a task may write."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail("allow_destinations", "expected a list of path patterns",
                   'e.g. [".github/workflows/generated-*.yml"]')
    return tuple(value)


def _parse_checkpoint(item: Any, fieldname: str, fail: Any, string: Any) -> Checkpoint:
    if not isinstance(item, dict):
        raise fail(fieldname, "expected an object", 'use {"name_or_path": "...", "trait": "coding"}')
    allowed = {
        "name_or_path", "trait", "name", "context_size", "sampling",
        "reasoning_start_tokens", "reasoning_stop_tokens", "reasoning_markers", "endpoint",
        "lora", "lora_scale", "samples",
    }
    for key in item:
        if key not in allowed:
            raise fail(f"{fieldname}.{key}", "unknown field",
                       f"remove it, or use one of: {', '.join(sorted(allowed))}")
    endpoint: str | None = None
    served_model: str | None = None
    if "endpoint" in item:
        endpoint = parse_endpoint(string(item["endpoint"], f"{fieldname}.endpoint"),
                                  f"{fieldname}.endpoint", fail)
        if item.get("name_or_path") is None and item.get("name") is None:
            raise fail(f"{fieldname}.name", "a checkpoint with only an endpoint needs a name",
                       'add "name": "..." (used in branch names), or "name_or_path" with '
                       "the model the server serves")
        if item.get("name_or_path") is not None:
            served_model = string(item["name_or_path"], f"{fieldname}.name_or_path")
        name_or_path = endpoint if served_model is None else f"{endpoint}#{served_model}"
    else:
        name_or_path = string(item.get("name_or_path"), f"{fieldname}.name_or_path")
    trait = item.get("trait")
    if trait not in ("coding", "reasoning"):
        raise fail(f"{fieldname}.trait", f"expected \"coding\" or \"reasoning\", got {json.dumps(trait)}",
                   "use \"coding\" for base models and \"reasoning\" for thinking chat models")
    name = item.get("name")
    if name is not None:
        name = string(name, f"{fieldname}.name")
    context_size = item.get("context_size")
    if context_size is not None and (
        isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 256
    ):
        raise fail(f"{fieldname}.context_size", f"expected an integer >= 256, got {context_size!r}",
                   "set it to the context length to allocate, e.g. 8192")
    sampling_raw = item.get("sampling", {})
    if not isinstance(sampling_raw, dict):
        raise fail(f"{fieldname}.sampling", "expected an object", 'e.g. {"temperature": 0.2}')
    values: dict[str, Any] = {}
    for key, value in sampling_raw.items():
        kind = _SAMPLING_KEYS.get(key)
        if kind is None:
            raise fail(f"{fieldname}.sampling.{key}", "unknown sampling setting",
                       f"use one of: {', '.join(_SAMPLING_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not isinstance(value, int)
        ):
            raise fail(f"{fieldname}.sampling.{key}", f"expected a number, got {json.dumps(value)}",
                       f"set {key} to a {kind.__name__}")
        values[key] = kind(value)

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
    start, stop = token_list("reasoning_start_tokens"), token_list("reasoning_stop_tokens")
    lora, lora_scale = _parse_lora(item, fieldname, fail)
    samples = item.get("samples", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise fail(f"{fieldname}.samples", f"expected an integer >= 1, got {json.dumps(samples)}",
                   "set samples to how many candidates to generate per prompt, e.g. 4")
    if samples > 1 and values.get("temperature", 0.0) <= 0.0:
        raise fail(f"{fieldname}.samples", "several samples need a temperature above 0 "
                   "(greedy decoding gives the same text every time)",
                   'add e.g. "sampling": {"temperature": 0.7}, or set samples to 1')
    if trait == "reasoning" and not stop and markers is None:
        raise fail(fieldname, "a reasoning checkpoint needs reasoning_stop_tokens or reasoning_markers",
                   "run `symergion models info` on the GGUF to see its thinking markers")
    return Checkpoint(
        name_or_path=name_or_path,
        trait=trait,
        name=name,
        context_size=context_size,
        sampling=Sampling(**values),
        reasoning_start_tokens=start,
        reasoning_stop_tokens=stop,
        reasoning_markers=markers,
        lora=lora,
        lora_scale=lora_scale,
        endpoint=endpoint,
        served_model=served_model,
        samples=samples,
    )


def _parse_lora(item: dict[str, Any], fieldname: str, fail: Any) -> tuple[str | None, float]:
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


def parse_endpoint(text: str, fieldname: str, fail: Any) -> str:
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


def is_safe_relative_path(path: str) -> bool:
    """Return whether a repository path stays inside the work tree and outside ``.git``."""
    if not path or "\\" in path or "\x00" in path:
        return False
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("..", "") for part in path.split("/")):
        return False
    return not any(part.lower() == ".git" for part in pure.parts)
