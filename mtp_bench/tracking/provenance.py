"""Which code ran, and where: the git commit of a checkout (recorded on every run and under every benchmark table),
whether git tracks a folder (committed results), and the environment a process runs in (package versions, Python,
CPU, torch's CPU kernels and threads, the environment variables that steer them), recorded on every trial run as
``mtp_bench.env.*`` tags and in ``provenance.yaml``.

Why the environment: the same commit gives different numbers on another CPU or library build (torch dispatches to
AVX-512 or AVX2 kernels, MKL and oneDNN pick code paths by CPU), so a result names the machine it came from.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from mtp_bench.cpu_kernels import RECORDED
from mtp_bench.tracking.tags import TAG_ENV

SOURCE = Path(__file__).resolve().parents[2]  # the checkout (or site-packages) mtp_bench was imported from

PACKAGES = ("mtp-bench", "torch", "transformers", "mlflow", "ray", "numpy", "scipy")
"""Distributions whose versions are recorded (the ones that move numbers or the record)."""

ENV_VARS = (*RECORDED, "CUBLAS_WORKSPACE_CONFIG")
"""Environment variables that choose kernels or thread counts (recorded with their value, None when unset): the CPU
ones :mod:`mtp_bench.cpu_kernels` pins or leaves to the user (with its switch), and cuBLAS's workspace."""

# Scalar fields in the order they are written; ``packages`` and ``env`` (mappings) follow them.
FIELDS = ("python", "platform", "cpu", "cpu_capability", "torch_threads", "torch_interop_threads", "gpu")
_INTS = ("torch_threads", "torch_interop_threads")


def _git(cwd: str | Path | None, *args: str) -> str | None:
    """``git ARGS`` in ``cwd``; its output, or None when git or the repository is missing. Read-only:
    ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status`` from refreshing the index."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(cwd: str | Path | None = None, *, short: bool = False, mark_local: bool = False) -> str | None:
    """The commit checked out at ``cwd`` (None outside a repository). ``short``: abbreviated. ``mark_local``: with
    ``" +local changes"`` when tracked files differ from it or the package folders hold new files (``results/`` is
    left out: it is where runs and benchmarks write, so a benchmark's own earlier section is no change)."""
    commit = _git(cwd, "rev-parse", *(["--short"] if short else []), "HEAD")
    if not commit or not mark_local:
        return commit or None
    changed = (_git(cwd, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results") or "") + (
        _git(cwd, "status", "--porcelain", "--", "mtp_bench", "methods") or "")
    return commit + (" +local changes" if changed else "")


def tracked_by_git(folder: str | Path) -> bool:
    """Whether git tracks any file under ``folder`` (False outside a repository, or without git)."""
    path = Path(folder).resolve()
    anchor = next((p for p in (path, *path.parents) if p.is_dir()), None)
    if anchor is None:
        return False
    return bool(_git(anchor, "ls-files", "--", str(path)))


# ------------------------------------------------------------------------------------------- environment ----
@functools.cache
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.cache
def cpu_model() -> str:
    """The CPU's model name and vendor, e.g. ``AMD EPYC 7763 64-Core Processor (AuthenticAMD)``."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux
        pass
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    vendor = fields.get("vendor_id")
    return f"{model} ({vendor})" if vendor else model


def environment() -> dict[str, Any]:
    """This process's environment: Python, platform, CPU, torch's CPU capability and threads (when torch is
    installed; importing it is the cost), the GPU when CUDA is there, package versions and :data:`ENV_VARS`."""
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model()}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        env["torch_threads"] = torch.get_num_threads()
        env["torch_interop_threads"] = torch.get_num_interop_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    env["packages"] = dict(_versions())
    env["env"] = {name: os.environ.get(name) for name in ENV_VARS}
    return env


def environment_tags(env: dict[str, Any] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) as MLflow tags: ``mtp_bench.env.<field>``; packages as one
    ``name=version`` list, the variables as ``NAME=value`` of those set (a name left out was unset)."""
    env = environment() if env is None else env
    tags = {f"{TAG_ENV}{key}": str(env[key]) for key in FIELDS if env.get(key) is not None}
    tags[f"{TAG_ENV}packages"] = " ".join(f"{k}={v}" for k, v in env.get("packages", {}).items() if v)
    tags[f"{TAG_ENV}vars"] = " ".join(f"{k}={v}" for k, v in env.get("env", {}).items() if v is not None) or "-"
    return tags


def environment_from_tags(tags: dict[str, str]) -> dict[str, Any] | None:
    """The environment a run recorded in its tags (None for a run from before they were recorded)."""
    if f"{TAG_ENV}python" not in tags:
        return None
    env: dict[str, Any] = {}
    for key in FIELDS:
        value = tags.get(f"{TAG_ENV}{key}")
        if value is not None:
            env[key] = int(value) if key in _INTS and value.isdigit() else value
    packages = dict(item.split("=", 1) for item in tags.get(f"{TAG_ENV}packages", "").split() if "=" in item)
    env["packages"] = {name: packages.get(name) for name in PACKAGES} | packages
    found = dict(item.split("=", 1) for item in tags.get(f"{TAG_ENV}vars", "").split() if "=" in item)
    env["env"] = {name: found.get(name) for name in ENV_VARS} | found
    return env


def environment_differences(recorded: dict[str, Any], here: dict[str, Any],
                            skip: tuple[str, ...] = ("platform",)) -> list[str]:
    """One line per field where ``here`` differs from ``recorded`` (fields either side lacks are not compared;
    ``skip``: fields not compared, by default the platform string, whose kernel version moves no number)."""
    lines = []
    for key in FIELDS:
        if key in skip or key not in recorded or key not in here:
            continue
        if str(recorded[key]) != str(here[key]):
            lines.append(f"{key}: recorded {recorded[key]}, here {here[key]}")
    for section, unset in (("packages", "not installed"), ("env", "unset")):
        if section in skip:
            continue
        theirs, ours = recorded.get(section) or {}, here.get(section) or {}
        for name in sorted(set(theirs) | set(ours)):
            a, b = theirs.get(name), ours.get(name)
            if a != b:
                lines.append(f"{'' if section == 'packages' else '$'}{name}: recorded {a or unset}, here {b or unset}")
    return lines


def describe(env: dict[str, Any]) -> list[str]:
    """A few human lines for an environment (what ``reproduce`` prints)."""
    threads = env.get("torch_threads")
    lines = [f"python {env.get('python', '?')} on {env.get('platform', '?')}",
             f"cpu {env.get('cpu', '?')}, torch CPU capability {env.get('cpu_capability', '?')}"
             + (f", torch threads {threads} (interop {env.get('torch_interop_threads', '?')})" if threads else "")]
    if env.get("gpu"):
        lines.append(f"gpu {env['gpu']}")
    lines.append("packages " + " ".join(f"{k}={v}" for k, v in (env.get("packages") or {}).items() if v))
    set_vars = [f"{k}={v}" for k, v in (env.get("env") or {}).items() if v is not None]
    lines.append("variables " + (" ".join(set_vars) if set_vars else "(none of " + ", ".join(ENV_VARS) + " set)"))
    return lines
