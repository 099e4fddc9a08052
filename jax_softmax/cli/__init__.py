"""The command line, ``jax-softmax COMMAND``: each command parses its flags into a config, calls
one library function, and prints.

- ``_main``: the parser of all commands, :func:`main` and the console entry point.
- ``_common``: what every command shares: flags, errors, exit statuses.
- one module per command: ``_train``, ``_models`` (evaluate, predict), ``_question``
  (diagnose, check-grad), ``_sweep``, ``_solve`` (its data in ``_solve_data``).
"""

from jax_softmax.cli._main import build_parser, main, main_entry, parse_arguments

__all__ = ["main", "main_entry", "build_parser", "parse_arguments"]
