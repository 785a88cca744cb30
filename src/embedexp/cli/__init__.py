"""One module per command, each with a `main()`: `python -m embedexp <command>` dispatches to them."""
