"""What a bug report needs: the machine, the llama.cpp build, the extra-buffer decision, git,
the config and its models, what verifying its templates needs, and the cache directory.

Every part is collected on its own: one that fails (llama_cpp does not import, the config is
invalid, git is missing) is reported with its error and a fix, and the rest is still collected.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symergion.config.environment import cache_dir, extra_buffers_setting
from symergion.config.load import load_config
from symergion.config.schema import PYTEST_KIND, Config
from symergion.errors import SymergionError
from symergion.gitrepo import run_git

# CPU features that decide which llama.cpp kernels run; the full flag list is in the JSON.
NOTABLE_FEATURES = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
    "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve", "sve2", "i8mm", "dotprod",
)


@dataclass
class DoctorReport:
    """The collected facts, section by section, and the problems found on the way."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {**self.sections, "problems": self.problems}


def diagnose(config_path: Path | None = None, models_dir: Path | None = None) -> DoctorReport:
    """Collect the report; never raises for a broken part, which is reported instead.

    Args:
        config_path: the config file (``None``: ``SYMERGION_CONFIG``, else the built-in one).
        models_dir: where relative model paths resolve (``None``: as ``load_config`` decides).
    """
    report = DoctorReport()
    report.sections["symergion"] = {"python": sys.version.split()[0], "executable": sys.executable,
                                    "platform": platform.platform()}
    report.sections["cpu"] = _cpu()
    llama, report.sections["llama_cpp"] = _llama_build(report)
    config = _config(report, config_path, models_dir)
    report.sections["extra_buffers"] = _extra_buffers(report, config, llama)
    report.sections["git"] = _git(report)
    report.sections["tests"] = _tests(report, config)
    report.sections["cache"] = _cache(report)
    return report


def _cpu() -> dict[str, Any]:
    from symergion.engine.extra_buffers import cpu_identity

    cpu = cpu_identity()
    flags = cpu["flags"].split()
    return {
        "model": cpu["model"],
        "machine": cpu["machine"],
        "cores": os.cpu_count(),
        "features": [f for f in NOTABLE_FEATURES if f in flags],
        "flags": flags,
    }


def _llama_build(report: DoctorReport) -> tuple[Any, dict[str, Any]]:
    try:
        from symergion.engine.extra_buffers import build_identity
        from symergion.engine.native import load_llama_cpp

        llama = load_llama_cpp()
        return llama, build_identity(llama)
    except Exception as exc:  # a broken native library must not stop the report
        report.problems.append(f"llama_cpp cannot be imported: {type(exc).__name__}: {exc}; "
                               "reinstall it: pip install --force-reinstall llama-cpp-python")
        return None, {"error": f"{type(exc).__name__}: {exc}"}


def _config(report: DoctorReport, path: Path | None, models_dir: Path | None) -> Config | None:
    try:
        config = load_config(path, models_dir)
    except SymergionError as exc:
        report.sections["config"] = {"error": str(exc)}
        report.problems.append(f"config: {exc}")
        return None
    from symergion.models.listing import list_models

    entries = list_models(config, scan_models_dir=False)
    for entry in entries:
        if not entry.usable:
            report.problems.append(f"model {entry.name_or_path}: {entry.problem}"
                                   + (f"; fix: {entry.fix}" if entry.fix else ""))
    report.sections["config"] = {
        "file": str(config.source) if config.source else None,
        "models_dir": str(config.models_dir),
        "threads": config.threads(),
        "models": [{"name": e.branch_name, "trait": e.trait, "name_or_path": e.name_or_path,
                    "status": e.status, "path": str(e.path) if e.path else None,
                    "problem": e.problem, "fix": e.fix} for e in entries],
    }
    return config


def _extra_buffers(report: DoctorReport, config: Config | None, llama: Any) -> dict[str, Any]:
    from symergion.engine.extra_buffers import (
        CACHE_FILE,
        Decision,
        VerdictCache,
        build_identity,
        cpu_identity,
        decide,
        identity_key,
        resolve,
    )

    try:
        setting, source = extra_buffers_setting(config)
    except SymergionError as exc:
        report.problems.append(str(exc))
        return {"error": str(exc)}
    section: dict[str, Any] = {"setting": setting, "source": source}
    if llama is None:
        section["decision"] = None
        section["reason"] = "llama_cpp does not import, so no model can be loaded"
        return section
    cache = VerdictCache(cache_dir() / CACHE_FILE)
    model = _first_usable_model(config)
    decision: Decision | None
    if model is not None:
        # Probes now if this machine and build were never probed: the answer a bug report needs.
        decision = resolve(setting, source, model, llama=llama, cache=cache)
    else:
        key = identity_key(cpu_identity(), build_identity(llama))
        decision = decide(setting, source, cache.get(key))
    if decision is None:
        section["decision"] = None
        section["reason"] = "not probed yet, and no usable model to probe with"
    else:
        section["decision"] = "on" if decision.use_extra_buffers else "off"
        section["reason"] = decision.reason
    section["verdicts"] = str(cache.path)
    return section


def _first_usable_model(config: Config | None) -> Path | None:
    if config is None:
        return None
    from symergion.models.resolve import resolve_model

    for checkpoint in config.checkpoints:
        try:
            return resolve_model(checkpoint.name_or_path, config.models_dir)
        except SymergionError:
            continue
    return None


def _git(report: DoctorReport) -> dict[str, Any]:
    # The git binary on PATH, outside any repository: gitrepo's commands all need one.
    try:
        proc = run_git("--version", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.problems.append(f"git cannot be run ({exc}); install git and put it on PATH")
        return {"error": str(exc)}
    if proc.returncode != 0:
        report.problems.append(f"git --version failed: {proc.stderr.strip()}")
        return {"error": proc.stderr.strip()}
    return {"version": proc.stdout.strip()}


def _tests(report: DoctorReport, config: Config | None) -> dict[str, Any]:
    """Return the kinds of test file the templates verify, and the packages their runs need.

    The sandbox runs generated tests with this interpreter, so what it cannot import, no
    candidate's run can: pytest for a template of the pytest kind, coverage.py for coverage.
    """
    specs = [t.verify for t in (config.templates.values() if config else ()) if t.verify is not None]
    found: dict[str, Any] = {"kinds": sorted({s.kind or "command" for s in specs})}
    needs = {"pytest": any(s.kind == PYTEST_KIND for s in specs),
             "coverage": any(s.coverage and s.structured for s in specs)}
    for name, needed in needs.items():
        if not needed:
            continue
        try:
            found[name] = importlib.import_module(name).__version__
        except ImportError as exc:
            found[name] = None
            report.problems.append(f"{name} cannot be imported ({exc}), and the config's templates "
                                   f"need it to verify candidates: pip install {name}")
    return found


def _cache(report: DoctorReport) -> dict[str, Any]:
    path = cache_dir()
    size = 0
    files = 0
    if path.is_dir():
        for root, _dirs, names in os.walk(path):
            for name in names:
                try:
                    size += (Path(root) / name).lstat().st_size
                    files += 1
                except OSError:
                    continue
    writable = _writable(path)
    if not writable:
        report.problems.append(f"the cache directory {path} is not writable; fix its permissions "
                               "or point SYMERGION_CACHE_DIR at a writable directory")
    return {"path": str(path), "exists": path.is_dir(), "bytes": size, "files": files,
            "writable": writable}


def _writable(path: Path) -> bool:
    """Return whether files can be created in ``path`` (or, if it does not exist yet, made)."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            return False
        existing = existing.parent
    if not existing.is_dir():
        return False
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".symergion-doctor-"):
            return True
    except OSError:
        return False
