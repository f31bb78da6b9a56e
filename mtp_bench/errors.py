"""Typed errors: what went wrong, in words meant for the user, and which exit code it earns.

Sub-commands raise these; :func:`mtp_bench.cli.main` alone prints them and turns them into exit codes. This module
imports nothing, so every layer may raise them.

Exit codes: 0 success; 1 :class:`RunFailed` (a trial failed, nothing to compare, a server died); 2
:class:`BadInput` and its kinds (suite, command line, plugin names, data, resources); 130 interrupted.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class MtpBenchError(Exception):
    """A failure the user is told about without a traceback. ``lines()`` is what is printed, one problem a line."""

    exit_code: ClassVar[int] = EXIT_RUN_FAILED

    def lines(self) -> list[str]:
        return [str(self)]


class RunFailed(MtpBenchError):
    """The command ran but did not succeed: a trial failed (the others are recorded), nothing to compare yet."""

    exit_code: ClassVar[int] = EXIT_RUN_FAILED


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


class ResourceError(BadInput):
    """A trial asks for resources this machine or cluster can never give (GPUs on a CPU-only machine, ...)."""
