"""Faults with nothing lost: a kill or a full disk in the middle of every output write leaves the previous complete
file (or none), never a half-written one, and a rerun succeeds.

Each writer's low-level write (Lightning's checkpoint save, `Path.write_text`, Parquet, `numpy.save`, safetensors)
is patched to write half of its bytes and then raise ENOSPC (in process) or die with `os._exit` (a subprocess: no
`finally`, no cleanup, exactly what SIGKILL leaves). `make faults` runs this file with
EMBEDEXP_FAULTS_RESULT=results/faults.json: the last test writes the counts per output there (the docs' fault table).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from embedexp.core.config import PROJECT_ROOT

from .fault_targets import KILLED_EXIT, TARGETS, Target, half_safetensors, injected

FAULTS = ("ENOSPC mid-write", "kill mid-write", "ENOSPC on the first write")
TALLY: dict[str, dict[str, int]] = {}  # output -> fault kind / "files checked" / "half-written files found" -> count


def tally(name: str) -> dict[str, int]:
    """The counts of one output (target)."""
    return TALLY.setdefault(name, dict.fromkeys([*FAULTS, "files checked", "half-written files found"], 0))


def export_write(folder, version):
    """`python -m embedexp export formats=[adapter]` of a tiny run (made once per folder)."""
    from .export_helpers import export, make_run

    run = folder.parent / "run"
    if not run.is_dir():
        make_run(run, ["pooling=mean", "prompt=eol"])
    export(run, folder / "export", "formats=[adapter]", "overwrite=true")
    files = (p for p in (folder / "export").rglob("*") if p.is_file())  # the adapter folder and the summary
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def export_read(path):
    """The complete bytes of an exported file (safetensors files must load)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        load_file(str(path))
    return path.read_bytes()


EXPORT_TARGET = Target(
    export_write, export_read, lambda path, v: path.read_bytes(), [("peft.peft_model.safe_save_file", half_safetensors)]
)
ALL = {**TARGETS, "export": EXPORT_TARGET}


def snapshot(files) -> dict:
    """Bytes of every output file."""
    return {path: path.read_bytes() for path in files}


def visible_files(folder) -> set:
    """Files a reader would take for outputs (hidden staging names excluded)."""
    return {p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts[-3:])}


def check_nothing_lost(folder, before: dict, name: str, fault: str) -> None:
    """Every output is byte-identical to the previous complete version; no other visible file appeared."""
    counts = tally(name)
    counts[fault] += 1
    for path, content in before.items():
        counts["files checked"] += 1
        if not path.is_file() or path.read_bytes() != content:
            counts["half-written files found"] += 1
            pytest.fail(f"{path}: not the previous complete file after the fault")
        ALL[name].read(path)  # and it still loads
    extra = {p for p in visible_files(folder) - set(before) if "expected-" not in str(p)}
    counts["half-written files found"] += len(extra)
    assert not extra, f"visible files left by the fault: {extra}"


def rerun_succeeds(folder, target: Target) -> None:
    """Writing version 2 without a fault gives complete version-2 files."""
    for path in target.write(folder, 2):
        assert target.read(path) == target.expected(path, 2), path


@pytest.mark.parametrize("name", list(ALL))
def test_disk_full_mid_write_keeps_the_previous_file(tmp_path, name):
    target, folder = ALL[name], tmp_path / "out"
    before = snapshot(target.write(folder, 1))
    with injected(target, "enospc"), pytest.raises(OSError) as error:
        target.write(folder, 2)
    assert "No space left on device" in str(error.value) or error.value.errno == 28
    check_nothing_lost(folder, before, name, FAULTS[0])
    staging = [p for p in folder.rglob(".*") if p.is_file() and "expected-" not in str(p)]
    assert not staging, f"staging files not cleaned up after an error: {staging}"
    rerun_succeeds(folder, target)


@pytest.mark.parametrize("name", [n for n in ALL if n != "export"])
def test_disk_full_on_the_first_write_leaves_nothing(tmp_path, name):
    target, folder = ALL[name], tmp_path / "out"
    with injected(target, "enospc"), pytest.raises(OSError):
        target.write(folder, 1)
    check_nothing_lost(folder, {}, name, FAULTS[2])
    rerun_succeeds(folder, target)


@pytest.mark.slow  # one process per target, killed mid-write
@pytest.mark.parametrize("name", list(ALL))
def test_kill_mid_write_keeps_the_previous_file(tmp_path, name):
    target, folder = ALL[name], tmp_path / "out"
    before = snapshot(target.write(folder, 1))
    killed = subprocess.run(
        [sys.executable, "-m", "tests.fault_targets", name, str(folder), "2", "kill"],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == KILLED_EXIT, killed.stderr[-3000:]  # died inside the patched write
    assert "survived" not in killed.stdout
    check_nothing_lost(folder, before, name, FAULTS[1])
    rerun_succeeds(folder, target)


def test_zz_fault_tally(capsys):
    """Print the counts of the faults injected in this session (half-written files: 0); with
    EMBEDEXP_FAULTS_RESULT=<file> (make faults) write them as the docs' result file."""
    with capsys.disabled():
        print(f"\nfault tally: {TALLY}")
    assert sum(counts["half-written files found"] for counts in TALLY.values()) == 0
    result_file = os.environ.get("EMBEDEXP_FAULTS_RESULT")
    if result_file and TALLY:
        from embedexp.core.results import write_result_table

        columns = ["output", "low-level write patched", *next(iter(TALLY.values()))]
        rows = [[name, ", ".join(p for p, _ in ALL[name].patches), *TALLY[name].values()] for name in TALLY]
        total = [sum(row[i] for row in rows) for i in range(2, len(columns))]
        rows.append(["total", "", *total])
        notes = "every rerun after a fault succeeded; the kill faults need the slow tests (make faults runs them)"
        write_result_table(result_file, "Faults with nothing lost", columns, rows, "make faults", notes=notes)
