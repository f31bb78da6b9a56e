"""mtp-bench: does a multi-token prediction objective beat next-token training for this model and task?"""

__version__ = "0.1.0"
