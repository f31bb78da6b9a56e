"""Every MLflow tag name mtp-bench writes or reads, in one place: writers and readers use these constants, never the
raw strings.

Run shape: one experiment per suite; a parent run per ``mtp-bench run`` invocation (``TAG_KIND`` = ``invocation``);
a child run per trial (``trial``), linked to its parent by MLflow's ``mlflow.parentRunId``.
"""

from __future__ import annotations

KIND_INVOCATION = "invocation"
KIND_TRIAL = "trial"
KIND_SUPERSEDED = "superseded"  # a trial's run whose attempt ended before its first checkpoint; a new run replaced it

# MLflow's own tags
TAG_GIT = "mlflow.source.git.commit"
TAG_PARENT = "mlflow.parentRunId"

# every run
TAG_KIND = "mtp_bench.kind"  # KIND_INVOCATION (parent) or KIND_TRIAL (child)
TAG_SUITE = "mtp_bench.suite"
TAG_ERROR = "mtp_bench.error"  # last line of a FAILED run's error (the whole traceback is the error.txt artifact)

# a trial's run
TAG_METHOD = "mtp_bench.method"  # display name (label or name)
TAG_METHOD_NAME = "mtp_bench.method_name"  # the registered method name
TAG_SEED = "mtp_bench.seed"
TAG_TRIAL_ID = "mtp_bench.trial_id"
TAG_CELL = "mtp_bench.cell"  # the grid cell, "key=value key=value"
TAG_INVOCATION = "mtp_bench.invocation"  # parent run id of the invocation that last opened this trial's run
TAG_PREVIOUS_PARENTS = "mtp_bench.previous_parents"  # earlier invocations that ran it (comma-separated run ids)
TAG_ATTEMPT = "mtp_bench.attempt"  # how many times that invocation has opened it (1 = first try, 2 = first retry)
TAG_SUPERSEDED_BY = "mtp_bench.superseded_by"  # on a KIND_SUPERSEDED run: the run that took its place
TAG_SUPERSEDES = "mtp_bench.supersedes"  # on that run: the superseded one
TAG_SELECT_ON = "mtp_bench.select_on"  # evaluation.select_on as configured
TAG_SELECT_METRIC = "mtp_bench.select_metric"  # the metric checkpoint selection used
TAG_PERIODIC_SPLIT = "mtp_bench.periodic_split"  # the split periodic evaluations scored ("val" or "test")
TAG_SELECTION = "mtp_bench.selection"  # which checkpoint the best/ metrics are of, in words
TAG_ENV = "mtp_bench.env."  # prefix: the environment the trial ran in (python, cpu, cpu_capability, packages, ...)

# an invocation's (parent) run
TAG_RESUME = "mtp_bench.resume"  # "True" for a --resume invocation
TAG_OVERRIDES = "mtp_bench.overrides"  # the command line's overrides, a JSON list
TAG_FAILED_TRIALS = "mtp_bench.failed_trials"
TAG_HOST = "mtp_bench.host"  # where the invocation's driver ran, and its process id: lets a later --resume tell
TAG_PID = "mtp_bench.pid"  # a parent left RUNNING by a killed driver from one still running
TAG_PID_STARTED = "mtp_bench.pid_started"  # when that process started (epoch seconds): a reused pid is not it
TAG_LOCK_RETRIES = "mtp_bench.lock_retries"  # store writes retried because SQLite was locked (only when non-zero)
TAG_CLOSED_BY = "mtp_bench.closed_by"  # on a stale parent marked KILLED: the invocation that found it
