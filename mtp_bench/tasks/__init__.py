"""Tasks: where examples come from. One module per task (named as its ``mtp_bench.tasks`` entry point; the
``addition`` task is ``addition.py``), its settings model (``Params``) in the same file: tasks import no torch, so a
suite validates by reading them directly. Beside them, what several tasks share: :mod:`.images` (the record layout
of class-conditional image tasks), :mod:`.summaries` (dialogue summarisation), and the ``make_*_twin`` tools that
write local stand-ins for hub datasets. The contract is :class:`mtp_bench.api.Task`; the guide is docs/tasks.md.
"""
