"""Whether llama.cpp may use its extra buffer types (AMX, repacked weights) on this machine.

On some Intel Xeon machines that report AMX, llama.cpp's AMX kernel dies with a general
protection fault (``ldtilecfg`` in ``ggml_backend_amx_mul_mat``) on the first batch of more
than a few tokens. Loading the model with ``use_extra_bufts = False`` avoids it, at a cost in
speed where the extra buffer types work (``docs/benchmarks.md``).

How it is decided, and why this way:

- ``on`` and ``off`` (``SYMERGION_EXTRA_BUFFERS``, else the config's ``extra_buffers``) are
  obeyed as they are.
- ``auto`` (the default) runs a probe once per CPU and llama.cpp build: a child process loads
  the model with extra buffers and decodes one batch of 64 tokens. If it dies by a crash signal
  (SIGSEGV, SIGILL, SIGBUS, ...), extra buffers are off; if it exits 0, they are on. The verdict
  is cached in the cache directory, keyed by the CPU (model name and flags) and the build
  (llama-cpp-python's version and ``llama_print_system_info``), so a moved VM or a rebuilt
  llama.cpp is probed again, and nothing else ever is.

A rule on CPU flags alone would be wrong both ways: the crash depends on whether the kernel and
hypervisor let the process use AMX tiles, not on the flag in ``/proc/cpuinfo``, so it would
give up the speed on every AMX machine where the kernel works, and would miss a machine whose
flags do not say AMX but whose build crashes elsewhere in the same path. Turning extra buffers
off everywhere costs speed on every machine. A native crash cannot be caught in the process
where it happens, so the probe is the only test that survives it. It costs one model load
and one batch (about a second), once. A probe that fails for another reason (it cannot load the
model, or is stopped by a signal such as Ctrl-C) proves nothing: extra buffers stay off for this
process and nothing is cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROBE_TOKENS = 64
PROBE_TIMEOUT = 300.0
# Deaths that say "native crash"; SIGINT, SIGTERM and SIGKILL come from outside and prove nothing.
CRASH_SIGNALS = frozenset({
    signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGTRAP,
})
CACHE_FILE = "extra-buffers.json"


@dataclass(frozen=True)
class Verdict:
    """What a probe found on one CPU and build."""

    use_extra_buffers: bool
    reason: str
    probed_at: str = ""


@dataclass(frozen=True)
class Decision:
    """Whether a model is loaded with extra buffer types, and why."""

    use_extra_buffers: bool
    setting: str  # auto | on | off
    source: str  # where the setting came from (env var, config, default)
    reason: str
    probed: bool = False  # a probe ran for this decision (not a cached verdict)

    def as_dict(self) -> dict[str, Any]:
        """Return the decision as plain data."""
        return asdict(self)


def decide(setting: str, source: str, cached: Verdict | None) -> Decision | None:
    """Return the decision a setting and a cached verdict make, or None when a probe must run."""
    if setting == "on":
        return Decision(True, setting, source, f"forced on by {source}")
    if setting == "off":
        return Decision(False, setting, source, f"forced off by {source}")
    if cached is None:
        return None
    return Decision(cached.use_extra_buffers, setting, source,
                    f"{cached.reason} (probed {cached.probed_at}, cached)")


def verdict_from_exit(returncode: int, probed_at: str = "") -> Verdict | None:
    """Return the verdict of a probe's exit status, or None when it proves nothing."""
    if returncode == 0:
        return Verdict(True, f"a probe with extra buffer types decoded {PROBE_TOKENS} tokens", probed_at)
    if returncode < 0 and -returncode in CRASH_SIGNALS:
        name = signal.Signals(-returncode).name
        return Verdict(False, f"a probe with extra buffer types died by {name} (llama.cpp's AMX or "
                              "repacking kernel crashes on this machine)", probed_at)
    return None


def cpu_identity() -> dict[str, str]:
    """Return the CPU's model name and feature flags (``/proc/cpuinfo``, else ``platform``)."""
    model, flags = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if not model and key in ("model name", "cpu model", "hardware"):
                model = value.strip()
            elif not flags and key in ("flags", "features"):
                flags = " ".join(sorted(value.split()))
            if model and flags:
                break
    return {
        "model": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "flags": flags,
    }


def build_identity(llama: Any) -> dict[str, str]:
    """Return llama-cpp-python's version and llama.cpp's ``llama_print_system_info``."""
    info = llama.llama_print_system_info()
    text = info.decode("utf-8", errors="replace") if isinstance(info, bytes) else str(info)
    return {"llama_cpp": str(getattr(llama, "__version__", "?")), "system_info": text.strip()}


def identity_key(cpu: dict[str, str], build: dict[str, str]) -> str:
    """Return the cache key of a CPU and a build."""
    data = json.dumps({"cpu": cpu, "build": build}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:32]


class VerdictCache:
    """Verdicts in one small JSON file, keyed by ``identity_key``.

    A cache only: a lost or corrupt file costs one probe.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Verdict | None:
        """Return the verdict stored for ``key``."""
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return Verdict(bool(entry["use_extra_buffers"]), str(entry["reason"]),
                           str(entry.get("probed_at", "")))
        except KeyError:
            return None

    def put(self, key: str, verdict: Verdict, identity: dict[str, Any]) -> None:
        """Store a verdict (with the identity it is for, to read by eye); never raises."""
        data = self._read()
        data[key] = {**asdict(verdict), **identity}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            tmp.replace(self.path)
        except OSError:
            # An unwritable cache means probing again next time, nothing worse.
            with contextlib.suppress(OSError):
                tmp.unlink()


def probe_command(model_path: Path) -> list[str]:
    """Return the command of the probe child for a model."""
    return [sys.executable, "-m", "symergion.engine.probe", str(model_path)]


def run_probe(command: Sequence[str], *, timeout: float = PROBE_TIMEOUT) -> int:
    """Run a probe child and return its exit status (negative: the signal that killed it)."""
    try:
        proc = subprocess.run(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout, check=False,
                              env=child_env())
    except subprocess.TimeoutExpired:
        return -int(signal.SIGKILL)
    except OSError:
        return 127
    return proc.returncode


def resolve(
    setting: str,
    source: str,
    model_path: Path,
    *,
    llama: Any,
    cache: VerdictCache,
    command: Sequence[str] | None = None,
) -> Decision:
    """Decide for a model load: obey ``on``/``off``; for ``auto``, use the cached verdict or probe.

    Args:
        setting: auto, on or off.
        source: where the setting came from, named in the reason.
        model_path: the GGUF the probe loads (the model about to be loaded).
        llama: the imported llama_cpp module, to read the build's identity.
        cache: where verdicts are kept.
        command: the probe child's command (default: ``probe_command(model_path)``).
    """
    cpu, build = cpu_identity(), build_identity(llama)
    key = identity_key(cpu, build)
    decided = decide(setting, source, cache.get(key) if setting == "auto" else None)
    if decided is not None:
        return decided
    returncode = run_probe(command or probe_command(model_path))
    verdict = verdict_from_exit(returncode, time.strftime("%Y-%m-%d %H:%M:%S"))
    if verdict is None:
        return Decision(False, setting, source,
                        f"the probe failed without a crash (exit status {returncode}); off for now, "
                        "probed again next time", probed=True)
    cache.put(key, verdict, {"cpu": cpu, "build": build})
    return Decision(verdict.use_extra_buffers, setting, source, verdict.reason, probed=True)


def machine_decision(model_path: Path, *, llama: Any, config: Any = None) -> Decision:
    """Decide for a model load as the CLI does: the setting (env var, else config), then the probe.

    This is what a ``LlamaEngine`` built without an explicit ``extra_buffers`` uses, so no caller
    can load a model with the setting that crashes this machine.

    Args:
        model_path: the GGUF about to be loaded (the probe loads it too).
        llama: the imported llama_cpp module.
        config: the config whose ``extra_buffers`` applies, if any.
    """
    from symergion.config.environment import cache_dir, extra_buffers_setting

    setting, source = extra_buffers_setting(config)
    return resolve(setting, source, model_path, llama=llama,
                   cache=VerdictCache(cache_dir() / CACHE_FILE))


@contextlib.contextmanager
def llama_cpp_params(use_extra_buffers: bool) -> Iterator[None]:
    """Make llama-cpp-python's own ``Llama`` (and its server) load models with this decision.

    ``Llama`` has no argument for it: it takes ``llama_model_default_params()`` from the
    bindings at load time, so the bindings' function is wrapped while the block runs.
    """
    bindings: Any = importlib.import_module("llama_cpp.llama_cpp")
    real = bindings.llama_model_default_params

    def params() -> Any:
        value = real()
        value.use_extra_bufts = use_extra_buffers
        return value

    bindings.llama_model_default_params = params
    try:
        yield
    finally:
        bindings.llama_model_default_params = real


def child_env() -> dict[str, str]:
    """Return the environment of a child process that must import this very symergion."""
    import symergion

    root = str(Path(symergion.__file__).resolve().parents[1])
    paths = [root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
