"""`python -m embedexp <command> [overrides]` (or `embedexp <command>`): one entry point for every command in cli/."""

from __future__ import annotations

import importlib
import sys

HELP_FLAGS = {"-h", "--help"}


def main(argv: list[str] | None = None) -> None:
    """Run `embedexp.cli.<command>.main(<the remaining arguments>)`; no command or `--help`: the list of commands."""
    from embedexp.cli.usage import COMMANDS, overview
    from embedexp.core.renamed import RENAMED_COMMANDS

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in HELP_FLAGS:
        print(overview())
        raise SystemExit(0 if args else 2)
    command = args[0].replace("-", "_")
    if command in RENAMED_COMMANDS:
        print(f"embedexp: the command {args[0]!r} was renamed to {RENAMED_COMMANDS[command]!r}", file=sys.stderr)
        raise SystemExit(2)
    if command not in COMMANDS:
        print(f"embedexp: unknown command {args[0]!r}\n\n{overview()}", file=sys.stderr)
        raise SystemExit(2)
    importlib.import_module(f"embedexp.cli.{command}").main(args[1:])


if __name__ == "__main__":
    main()
