"""``mtp-bench bench``: what each method and the harness cost. This module names the parts, in the order the report
lists them; it imports nothing, so the command-line parser can read it without torch."""

# The first command a user types, the training loop's own cost, what each method costs (training, evaluation,
# speculative decoding), then the opt-in grid makespan and the README's main job timed whole.
PARTS = ("frontdoor", "overhead", "methods", "eval", "speculative", "makespan", "quickstart")
