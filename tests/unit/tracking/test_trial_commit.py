"""A trial records its invocation's commit (the parent run's), not the checkout at the moment the trial starts: a
commit made while a long grid runs must not split the grid into "code versions" that compare then warns about."""

from __future__ import annotations

from mtp_bench.tracking import TAG_GIT, Tracker


def test_a_trial_takes_its_parents_commit_and_a_parentless_run_the_checkouts(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "commits")
    parent = tracker.start_run("grid", {TAG_GIT: "a" * 40})
    child = tracker.start_run("ntp seed=0", {}, parent_id=parent)
    assert tracker.client.get_run(child).data.tags[TAG_GIT] == "a" * 40
    alone = tracker.client.get_run(tracker.start_run("alone", {})).data.tags.get(TAG_GIT)
    assert alone != "a" * 40  # this checkout's commit (or none outside git)
