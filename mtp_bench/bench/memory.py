"""Peak training memory of one trial, measured in a fresh process.

A long-lived helper process (``python -m mtp_bench.bench.memory``) imports the libraries once; for every job it forks
a child that prepares the trial, builds the shared loop on the given batches, resets the peak counters and trains a
few steps. Each measurement therefore starts from the same state — libraries imported, nothing else allocated — as a
freshly started process would, without paying the imports again (seconds each on a loaded machine).

CPU: peak resident set size over the steps (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` after set-up;
elsewhere ``ru_maxrss``, which also covers set-up) and the resident size before them. GPU:
``torch.cuda.max_memory_allocated`` over the steps and ``memory_allocated`` before them.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULT = "MTP_BENCH_MEMORY "  # prefix of the helper's result lines (anything else on its stdout is ignored)


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def probe(document: dict[str, Any], indices: list[list[int]], steps: int, threads: int) -> dict[str, Any]:
    """Prepare the trial ``document`` and measure memory over ``steps`` training steps on the batches ``indices``."""
    import psutil
    import torch

    from mtp_bench.bench.batches import make_batches, trainer_for
    from mtp_bench.suite.config import TrialConfig
    from mtp_bench.trial import prepare

    torch.set_num_threads(threads)
    prepared = prepare(TrialConfig.model_validate(document))
    trainer = trainer_for(prepared, make_batches(prepared, indices))
    gc.collect()
    device = prepared.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = psutil.Process().memory_info().rss
    reset = device.type != "cuda" and _reset_peak_rss()
    for step in range(steps):
        trainer.train_step(step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return {"before": before, "peak": torch.cuda.max_memory_allocated(device), "kind": "cuda"}
    hwm = _status_kib("VmHWM") if reset else None
    if hwm is not None:
        return {"before": before, "peak": hwm * 1024, "kind": "rss"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"before": before, "peak": peak, "kind": "rss since start"}


def _run_job(line: str) -> str:
    try:
        result = {"ok": probe(**json.loads(line))}
    except Exception as exc:  # reported to the caller, which raises it with the job's name
        result = {"error": f"{type(exc).__name__}: {exc}"}
    return json.dumps(result)


def _preload(job: dict[str, Any]) -> None:
    """Import (only import: nothing is allocated that a child would inherit) what preparing the job's trial will
    import, so that forked children do not each pay for it: the method and task plugins, the model's modelling
    code for presets."""
    import importlib

    from mtp_bench import registry
    from mtp_bench.suite.presets import PRESETS

    document = job["document"]
    registry.load(registry.METHODS, document["method"]["name"])
    registry.load(registry.TASKS, document["data"]["task"])
    preset = document["model"].get("preset")
    if preset in PRESETS:
        model_type = PRESETS[preset][0]
        importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")


def serve() -> None:
    """The helper's loop: one JSON job per stdin line, one result line per job, each job in a forked child."""
    import mtp_bench.trial  # noqa: F401  (preloaded: forked children start with it imported)

    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        _preload(job)
        if "steps" not in job:  # a preload request only
            print(RESULT + json.dumps({"ok": "ready"}), flush=True)
            continue
        if not hasattr(os, "fork"):  # no fork: run here; the caller starts a new helper for the next job
            print(RESULT + _run_job(line), flush=True)
            return
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: measure, send the result through the pipe, leave without cleanup
            os.close(read_fd)
            os.dup2(2, 1)  # library prints go to stderr, never into the result channel
            with os.fdopen(write_fd, "w") as channel:
                channel.write(_run_job(line))
            os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd) as channel:
            text = channel.read()
        _, status = os.waitpid(pid, 0)
        if not text:
            text = json.dumps({"error": f"the measuring process died (wait status {status})"})
        print(RESULT + text, flush=True)


class ProbeServer:
    """Client of the helper process. ``start(document)`` launches it and has it import what ``document``'s trial
    needs while the caller does other work; ``ready()`` waits for that; ``measure(...)`` runs one job."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.pending = 0  # replies not read yet

    def start(self, document: dict[str, Any] | None = None) -> ProbeServer:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, "-m", "mtp_bench.bench.memory"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True)
            self.pending = 0
        if document is not None:
            self._send({"document": document})
        return self

    def _send(self, job: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        self.pending += 1

    def _reply(self, label: str) -> Any:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(RESULT):
                self.pending -= 1
                reply = json.loads(line[len(RESULT):])
                if "error" in reply:
                    raise RuntimeError(f"memory probe of {label} failed: {reply['error']}")
                return reply["ok"]
        raise RuntimeError(f"memory probe of {label}: the helper process exited ({self.process.wait()})")

    def ready(self) -> None:
        while self.pending:
            self._reply("preload")

    def measure(self, label: str, document: dict[str, Any], indices: list[list[int]], steps: int,
                threads: int) -> dict[str, Any]:
        self.start()
        self.ready()
        self._send({"document": document, "indices": indices, "steps": steps, "threads": threads})
        return self._reply(label)

    def __enter__(self) -> ProbeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    serve()
