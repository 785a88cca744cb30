"""`python -m embedexp <command> [overrides]` (or `embedexp <command>`): one entry point for every command in cli/."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train and evaluate an embedder (conf/train.yaml); -m for sweeps",
    "eval": "score a model, a run or an exported folder on the clustering tasks (conf/eval.yaml)",
    "encode": "embed a text file or table column to .npy / .parquet (conf/encode.yaml)",
    "export": "export a run as adapter, merged model and sentence-transformers folder (conf/export.yaml)",
    "report": "tables with 95 % intervals over seeds for multirun folders (conf/report.yaml)",
    "fidelity": "the callback's small-task scores against larger evaluations (conf/fidelity.yaml)",
    "attention": "attention maps: where the final token looks (conf/attention.yaml)",
    "synth": "synthetic positive pairs (conf/synth.yaml)",
    "mine": "add mined hard negatives to a pair file (conf/mine.yaml)",
    "fetch_shared": "build the shared clustering data files from their public sources (needs internet)",
    "contamination": "a run's training pairs against labelled files: exact and near-duplicate overlap",
}


HELP_FLAGS = {"-h", "--help"}
OWN_HELP = {"fetch_shared"}  # argparse commands: their own --help


def usage() -> str:
    """The list of commands and their config groups."""
    from embedexp.cli.usage import overview

    return overview(COMMANDS)


def main() -> None:
    """Run `embedexp.cli.<command>.main()` with the remaining arguments; `--help` lists config groups."""
    if len(sys.argv) < 2 or sys.argv[1] in HELP_FLAGS:
        print(usage())
        raise SystemExit(0 if len(sys.argv) >= 2 else 2)
    command = sys.argv[1].replace("-", "_")
    if command not in COMMANDS:
        print(f"embedexp: unknown command {sys.argv[1]!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    if HELP_FLAGS & set(sys.argv[2:]) and command not in OWN_HELP:
        from embedexp.cli.usage import command_help

        print(command_help(command, COMMANDS[command]))
        raise SystemExit(0)
    sys.argv = [f"embedexp {command}", *sys.argv[2:]]
    importlib.import_module(f"embedexp.cli.{command}").main()


if __name__ == "__main__":
    main()
