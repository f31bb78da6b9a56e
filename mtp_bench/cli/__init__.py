"""``mtp-bench``: the command line, one module per command (``run``, ``validate``, ``compare``, ...; the four
listings share :mod:`.listing`), each declaring its :class:`~mtp_bench.cli.command.Command`\\ s in ``COMMANDS``. The
parser and the error printing live in :mod:`.entry`; a new command is a new module here, named in
:data:`.entry.COMMAND_MODULES`."""

from mtp_bench.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
