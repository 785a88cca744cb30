"""The one command shell: every `embedexp` command's `main(argv)` is made here, so they share one behaviour.

A Hydra command (`hydra_command`): `--help` lists its config groups (with the user's own options under
`hydra.searchpath`); a config group the command does not have is refused in one line; then Hydra composes the
config and `run_job` runs the command's body in the shell: a quiet console, the config checked at the door
(`embedexp.core.validation`: a wrong value stops the run before anything is loaded, and the folder Hydra made for it
is removed), threads, `auto` precision, seeds and `provenance.json` in the output folder (`setup_run`), and every
`EmbedexpError` printed once as `error: <message>`. A run that fails after it started keeps its folder, with
`run_status.json` saying why. An argparse command (`plain_command`) gets the same console and errors.

The command's arguments reach Hydra here and only here (`hydra_argv`): no other module rewrites `sys.argv`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig

from embedexp.cli.usage import COMMANDS, command_help, search_dirs
from embedexp.core.config import CONFIG_DIR
from embedexp.core.console import quiet_console
from embedexp.core.errors import exit_on_error
from embedexp.core.renamed import refuse_renamed
from embedexp.core.run_setup import RunSetup, setup_run

log = logging.getLogger(__name__)
T = TypeVar("T")
HELP_FLAGS = {"-h", "--help"}
HYDRA_FILES = {".hydra", "multirun.yaml"}  # what Hydra writes into a folder before the job's body runs


@contextlib.contextmanager
def hydra_argv(command: str, args: list[str]) -> Iterator[None]:
    """`sys.argv` as Hydra reads it (`hydra.main` parses nothing else), put back afterwards."""
    saved = sys.argv
    sys.argv = [f"embedexp {command}", *args]
    try:
        yield
    finally:
        sys.argv = saved


def refuse_foreign_group(command: str, args: list[str]) -> None:
    """A `group=option` for a config group the command does not compose (e.g. `eval experiment=smoke`): one clear
    error naming the command's groups, instead of Hydra's `Could not override`."""
    from embedexp.cli.usage import defaults_list

    groups = defaults_list(command)
    for arg in args:
        key = arg.split("=", 1)[0].lstrip("+")
        if "=" not in arg or "." in key or key in groups or not (CONFIG_DIR / key).is_dir():
            continue
        own = ", ".join(groups) or "none"
        hint = " (experiments are training recipes: `embedexp train experiment=...`)" if key == "experiment" else ""
        raise SystemExit(f"error: {command} has no config group `{key}`{hint}; its groups: {own}")


def discard_unstarted(folder: Path) -> None:
    """Remove the folder Hydra made for a run that never started (it holds Hydra's record and log only); a folder
    with anything else (an earlier run resumed into it) stays. An emptied multirun folder goes too."""
    for handler in logging.getLogger().handlers[:]:  # Hydra's file handler holds `<task>.log` open
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder:
            handler.close()
            logging.getLogger().removeHandler(handler)
    if not only_hydra_files(folder):
        return
    shutil.rmtree(folder)
    if (folder.parent / "multirun.yaml").is_file() and only_hydra_files(folder.parent):
        shutil.rmtree(folder.parent)


def only_hydra_files(folder: Path) -> bool:
    """Whether a folder holds nothing but what Hydra writes before a job's body runs."""
    entries = list(folder.iterdir()) if folder.is_dir() else []
    return bool(entries) and all(p.name in HYDRA_FILES or p.suffix == ".log" for p in entries)


def mark_failed(folder: Path, error: BaseException) -> None:
    """`run_status.json` says `failed` with the reason, unless the run already recorded how it ended."""
    from embedexp.core.run_status import FAILED, INTERRUPTED, RunStatus, classify, read_status

    if (read_status(folder) or {}).get("status") in (FAILED, INTERRUPTED) or not folder.is_dir():
        return
    status, reason, _ = classify(error)
    RunStatus(folder).end(status, reason, None)


def run_job(cfg: DictConfig, body: Callable[[RunSetup], T], prepare: Callable[[DictConfig], None] | None = None) -> T:
    """Run a command's body on a composed config in the shell (see the module docstring); `prepare` completes the
    config first (e.g. eval takes a run's own settings), as part of the checks at the door."""
    quiet_console()
    folder = Path(cfg.paths.output_dir)
    try:
        with exit_on_error(log):
            if prepare is not None:
                prepare(cfg)
            run = setup_run(cfg)
    except SystemExit:
        discard_unstarted(folder)
        raise
    with exit_on_error(log):
        try:
            return body(run)
        except Exception as error:
            mark_failed(folder, error)
            raise


def hydra_command(
    name: str,
    body: Callable[[RunSetup], Any],
    expand: Callable[[list[str]], list[str]] | None = None,
    prepare: Callable[[DictConfig], None] | None = None,
) -> Callable[[list[str] | None], None]:
    """The `main(argv=None)` of a Hydra command on `conf/<name>.yaml`: `expand` turns its own argument forms
    (folders, shorthands) into overrides; `prepare` completes the composed config before the checks; `body` gets
    the set-up run and returns what sweepers optimise."""

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=name)
    @functools.wraps(body)  # Hydra names the job after the body's module
    def task(cfg: DictConfig) -> Any:
        return run_job(cfg, body, prepare)

    def main(argv: list[str] | None = None) -> None:
        """Command line: `[group=option ...] [key=value ...]` and Hydra's flags; `--help` lists the groups."""
        args = list(sys.argv[1:] if argv is None else argv)
        args = expand(args) if expand else args
        if HELP_FLAGS & set(args):
            print(command_help(name, COMMANDS.get(name, ""), search_dirs(args)))
            raise SystemExit(0)
        refuse_renamed(args)
        refuse_foreign_group(name, args)
        with hydra_argv(name, args):
            task()

    return main


def plain_command(
    parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], None]
) -> Callable[[list[str] | None], None]:
    """The `main(argv=None)` of an argparse command: the shell's console and one-line errors around `body`."""

    def main(argv: list[str] | None = None) -> None:
        """Command line: see `--help`."""
        quiet_console()
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        with exit_on_error(log):
            body(args)

    return main
