"""`python -m embedexp fetch_shared --out <folder>`: the shared clustering data from public sources."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embedexp.cli.runner import plain_command
from embedexp.core.atomic import atomic_write_text
from embedexp.core.provenance import provenance
from embedexp.core.run_setup import PROVENANCE
from embedexp.data.fetch_shared import fetch_shared


def fetch(args: argparse.Namespace) -> None:
    """Build the files (a failed download: one line naming the URL, the reason and what to do), then provenance."""
    counts = fetch_shared(args.out, args.source_dir)
    atomic_write_text(Path(args.out) / PROVENANCE, json.dumps(provenance(None), indent=2))
    for name, rows in counts.items():
        print(f"{Path(args.out) / name}: {rows} rows")


PARSER = argparse.ArgumentParser(prog="embedexp fetch_shared", description=__doc__.split("\n", 1)[0])
PARSER.add_argument("--out", required=True, help="folder to write the .jsonl.gz files into")
PARSER.add_argument("--source-dir", help="local copies: text_gcn.tar.gz, StackOverflow/rawText, STC2/dataset")
# command line: `--out <folder>` [`--source-dir <local copies>`]
main = plain_command(PARSER, fetch)


if __name__ == "__main__":
    main()
