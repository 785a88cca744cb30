"""Fault injection for tests/test_faults.py: each output writer, the low-level call that writes its bytes, and a
patch of that call that writes half of the bytes and then fails (disk full) or dies (os._exit, like SIGKILL).

`python -m tests.fault_targets <target> <folder> <version> kill` runs one writer in a fresh process with the kill
patched in: the process dies mid-write with exit code 137 and no cleanup of any kind.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

KILLED_EXIT = 137


def fail(fault: str) -> None:
    """Disk full (ENOSPC) or death without cleanup."""
    if fault == "kill":
        os._exit(KILLED_EXIT)
    raise OSError(errno.ENOSPC, "No space left on device (injected)")


def write_half(target, data: bytes) -> None:
    """Write the first half of `data` to a path or an open binary handle, as an interrupted write leaves it."""
    half = data[: max(1, len(data) // 2)]
    if hasattr(target, "write"):
        target.write(half)
        target.flush()
    else:
        with open(target, "wb") as handle:
            handle.write(half)


def half_write_text(fault: str) -> Callable:
    """`Path.write_text` that writes half of the text, then fails."""

    def patched(self, data, encoding=None, errors=None, newline=None):
        write_half(self, data.encode(encoding or "utf-8"))
        fail(fault)

    return patched


def half_torch_save(fault: str) -> Callable:
    """Lightning's `_atomic_save(checkpoint, path)` that writes half of the serialized checkpoint, then fails."""

    def patched(checkpoint, filepath):
        import torch

        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_half(filepath, buffer.getvalue())
        fail(fault)

    return patched


def half_parquet(fault: str) -> Callable:
    """`pyarrow.parquet.write_table` that writes half of the file, then fails."""

    def patched(table, where, *args, **kwargs):
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        REAL["write_table"](table, sink, *args, **kwargs)
        write_half(where, sink.getvalue().to_pybytes())
        fail(fault)

    return patched


def half_np_save(fault: str) -> Callable:
    """`numpy.save` that writes half of the array file, then fails."""

    def patched(file, arr, *args, **kwargs):
        buffer = io.BytesIO()
        REAL["np_save"](buffer, arr, *args, **kwargs)
        write_half(file, buffer.getvalue())
        fail(fault)

    return patched


def half_safetensors(fault: str) -> Callable:
    """`safetensors.torch.save_file` (as transformers and peft call it) that writes half the file, then fails."""

    def patched(tensors, filename, metadata=None, *args, **kwargs):
        from safetensors.torch import save

        write_half(filename, save(tensors, metadata=metadata))
        fail(fault)

    return patched


def _real() -> dict:
    """The unpatched functions the patches serialize with."""
    import numpy as np
    import pyarrow.parquet as pq

    return {"write_table": pq.write_table, "np_save": np.save}


REAL: dict = {}


@dataclass
class Target:
    """An output writer under test."""

    write: Callable[[Path, int], list[Path]]  # writes version `v` into the folder, returns the files it made
    read: Callable[[Path], object]  # loads one output file completely (raises if it is incomplete)
    expected: Callable[[Path, int], object]  # what `read` gives for version `v`
    patches: list[tuple[str, Callable[[str], Callable]]]  # dotted names of the low-level writes, their half-writers


def write_table(folder: Path, version: int) -> list[Path]:
    """`clustering_results.{md,csv}` as the evaluation callback writes them."""
    from embedexp.evaluation.clustering import write_results_table

    rows = [
        {"stage": "epoch", "step": step, "TaskA": version + step / 10, "clustering_mean": version} for step in range(3)
    ]
    return list(write_results_table(rows * 200, folder))


def read_text(path: Path) -> str:
    """A text output: its full content."""
    return path.read_text(encoding="utf-8")


def expected_table(path: Path, version: int) -> str:
    """The table text of `version` (written to a scratch folder beside the outputs)."""
    scratch = path.parent.parent / f"expected-{version}"
    write_table(scratch, version)
    return (scratch / path.name).read_text(encoding="utf-8")


def write_checkpoint(folder: Path, version: int) -> list[Path]:
    """A checkpoint through the writer `embedexp.cli.train` gives the Trainer."""
    import torch

    from embedexp.training.checkpointing import AtomicCheckpointIO

    path = folder / "checkpoints" / "last.ckpt"
    checkpoint = {"global_step": version, "state_dict": {"lora_A": torch.full((256, 256), float(version))}}
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    return [path]


def read_checkpoint(path: Path) -> tuple:
    """Step and the weight value of a checkpoint."""
    import torch

    checkpoint = torch.load(path, weights_only=True)
    return checkpoint["global_step"], float(checkpoint["state_dict"]["lora_A"].mean())


def write_shard_file(folder: Path, version: int) -> list[Path]:
    """A synthesis shard (Parquet with its progress record)."""
    import pandas as pd

    from embedexp.synthesis.writer import ShardInfo, write_shard

    frame = pd.DataFrame({"text": [f"text {i} v{version}" for i in range(500)], "text_pos": ["p"] * 500})
    info = ShardInfo(0, "pairs-00000.parquet", 500, 0, 500, 42, 1.0, fingerprint=f"v{version}")
    return [write_shard(folder, frame, info)]


def read_shard(path: Path) -> tuple:
    """Rows and the version of a shard."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.num_rows, table.column("text")[0].as_py()


def write_encoded(folder: Path, version: int) -> list[Path]:
    """`python -m embedexp encode` output: `.npy` and `.parquet` vectors."""
    import numpy as np
    import pandas as pd

    from embedexp.cli.encode import write_vectors

    vectors = np.full((300, 64), float(version), dtype=np.float32)
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(300)]})
    return [write_vectors(vectors, folder / f"vectors{suffix}", frame, "text", []) for suffix in (".npy", ".parquet")]


def read_encoded(path: Path) -> tuple:
    """Shape and value of an encode output."""
    import numpy as np
    import pyarrow.parquet as pq

    if path.suffix == ".npy":
        array = np.load(path)
        return array.shape, float(array.mean())
    table = pq.read_table(path)
    return (table.num_rows, len(table.column("embedding")[0])), float(table.column("embedding")[0][0].as_py())


TARGETS: dict[str, Target] = {
    "checkpoint": Target(
        write_checkpoint,
        read_checkpoint,
        lambda path, v: (v, float(v)),
        [("lightning.fabric.plugins.io.torch_io._atomic_save", half_torch_save)],
    ),
    "results_table": Target(write_table, read_text, expected_table, [("pathlib.Path.write_text", half_write_text)]),
    "synthesis_shard": Target(
        write_shard_file,
        read_shard,
        lambda path, v: (500, f"text 0 v{v}"),
        [("embedexp.synthesis.writer.pq.write_table", half_parquet)],
    ),
    "encode_output": Target(
        write_encoded,
        read_encoded,
        lambda path, v: ((300, 64), float(v)),
        [("embedexp.cli.encode.np.save", half_np_save), ("embedexp.cli.encode.pq.write_table", half_parquet)],
    ),
}


def injected(target: Target, fault: str) -> ExitStack:
    """A context in which the target's low-level writes fail half-way with `fault`."""
    REAL.update(_real())
    stack = ExitStack()
    for name, factory in target.patches:
        stack.enter_context(mock.patch(name, factory(fault)))
    return stack


def main() -> None:
    """Subprocess entry: write one version of a target with the kill patched in."""
    name, folder, version, fault = sys.argv[1:5]
    target = TARGETS[name] if name != "export" else None
    if target is None:
        from tests.test_faults import EXPORT_TARGET

        target = EXPORT_TARGET
    with injected(target, fault):
        target.write(Path(folder), int(version))
    print(json.dumps({"survived": True}))


if __name__ == "__main__":
    main()
