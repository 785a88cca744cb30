"""One module per command, each with a `main()`: `python -m embedexp <command>` dispatches to them."""

from embedexp.core.console import silence_import_prints

silence_import_prints()  # the commands import transformers (through sentence-transformers) before their main() runs
