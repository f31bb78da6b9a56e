"""Every error class of mtp-bench: what went wrong, in words meant for the user, and which exit code it earns.

Commands raise these; :mod:`mtp_bench.cli.entry` alone prints them and turns them into exit codes. This module
imports nothing, so every layer may raise them.

Exit codes (all here): 0 success; 1 :class:`RunFailed` (a trial failed, nothing to compare, a server died, Ray did
not start); 2 :class:`BadInput` and its kinds (suite, command line, plugin names, data, stores, resources); 130
interrupted. The classes at the end are not shown to the user as they are: the code that catches them turns them into
one of the above (or into a failed trial).
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class MtpBenchError(Exception):
    """A failure the user is told about without a traceback. ``lines()`` is what is printed, one problem a line."""

    exit_code: ClassVar[int] = EXIT_RUN_FAILED

    def lines(self) -> list[str]:
        return [str(self)]


# ------------------------------------------------------------------------------------ exit 1: it did not work ----
class RunFailed(MtpBenchError):
    """The command ran but did not succeed: a trial failed (the others are recorded), nothing to compare yet."""

    exit_code: ClassVar[int] = EXIT_RUN_FAILED


class RayStartError(MtpBenchError):
    """Ray could not be started here or joined at the given address (for example a local Ray that did not come up
    in time on a loaded machine). Raised before any trial starts; exit code 1 (the suite itself may be fine)."""


class StoreWriteError(RunFailed):
    """The store failed mid-run (disk full, read-only, locked for good): what was recorded and what was left open,
    and how to close it (``--resume``)."""


class ServerError(RunFailed):
    """The MLflow server of ``mtp-bench ui`` died or never answered."""


# ----------------------------------------------------------------------- exit 2: input that cannot be used ----
class BadInput(MtpBenchError):
    """Input that cannot be used; nothing was started. Messages name the key path or file:line at fault."""

    exit_code: ClassVar[int] = EXIT_BAD_INPUT


class UsageError(BadInput):
    """A command line that does not make sense (missing argument, options that exclude each other)."""


class SuiteError(BadInput, ValueError):
    """A suite that cannot be used; ``problems`` holds one ``key.path: message`` line each (the key path first, so
    the user finds the line to change)."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def lines(self) -> list[str]:
        return self.problems


class PluginError(BadInput, LookupError):
    """An unknown or broken plugin (method, scorer, task); the message lists what is installed."""


class DataError(BadInput, ValueError):
    """Bad or missing data; the message names the file (and line)."""


class SchedulingError(BadInput, ValueError):
    """A grid that cannot run where it was sent (resources no node has, a tracking store other machines cannot
    reach). Raised before any trial starts; the message is meant for the user as it is."""


class StoreError(BadInput, ValueError):
    """A store that cannot be used as asked (missing, not MLflow's, damaged, read-only, locked, another MLflow's
    schema, a deleted experiment, a server that does not answer); the message is meant for the user as it is."""


class InvocationRunning(BadInput):
    """``--resume`` while an invocation of the same suite still runs: it would train that one's trials a second time
    into the same runs. Nothing is written."""


class ImageScorerError(BadInput):
    """A configured image decoder or FID library is missing or answers wrongly."""


class UIError(BadInput):
    """``mtp-bench ui`` cannot serve what it was given (missing store, not a store, busy port)."""


class OtherCommit(BadInput):
    """``reproduce``: the checkout is not the commit the provenance names for the trial (unless allowed)."""


# ------------------------------------------------------------- caught inside and reported as one of the above ----
class LmEvalError(ValueError):
    """An lm-eval task that cannot run as configured; the message names it and says what to change (preflight
    reports it as a suite problem)."""


class GgufError(ValueError):
    """A GGUF source that cannot be used, in one line meant for the user (the caller adds the key path)."""


class UnsupportedModelError(TypeError):
    """The model's layout is not one the model anatomy helpers can take apart; the message names the missing piece."""


class SelectionError(ValueError):
    """The selection metric is not among the metrics the evaluation produces."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (the trial fails; the others go on)."""
