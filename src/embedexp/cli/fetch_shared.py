"""`python -m embedexp fetch_shared --out <folder>`: the shared clustering data from public sources."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from embedexp.core.console import quiet_console
from embedexp.core.errors import DataError
from embedexp.data.fetch_shared import fetch_shared


def main(argv: list[str] | None = None) -> None:
    """Command line: `--out <folder>` [`--source-dir <local copies>`]."""
    quiet_console()
    parser = argparse.ArgumentParser(prog="embedexp fetch_shared", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", required=True, help="folder to write the .jsonl.gz files into")
    parser.add_argument("--source-dir", help="local copies: text_gcn.tar.gz, StackOverflow/rawText, STC2/dataset")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        counts = fetch_shared(args.out, args.source_dir)
    except DataError as error:  # one line naming the URL or file, the reason and what to do
        raise SystemExit(f"error: {error}") from None
    for name, rows in counts.items():
        print(f"{Path(args.out) / name}: {rows} rows")


if __name__ == "__main__":
    main()
