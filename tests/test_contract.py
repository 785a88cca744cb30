"""The extension contract, exactly as the docs state it: a pooling with options is one class and one YAML in the
user's own folder, nothing else. With an installed wheel, from that folder: train, evaluate, export, load the export
with plain sentence-transformers, and sweep over an option. The export gives the trained embedder's vectors, and the
zero-shot score cache keeps one entry per option value.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from .test_wheel import installed, run, snapshot, with_shared_data  # noqa: F401 - `installed` is a fixture

pytestmark = pytest.mark.slow

POOLING_YAML = """\
_target_: my_poolings.PowerMeanPooling
power: 2.0  # 1: the mean; larger: closer to the largest value of each dimension
exclude_prompt: false  # true: pool over the text tokens only
"""

SMALL = ["experiment=smoke", "trainer.max_epochs=1", "data.source.max_pairs=32", "eval.precision=32"]
SEARCHPATH = "hydra.searchpath=[file://my_conf]"

COMPARE = """
import json, sys
import numpy as np
from omegaconf import OmegaConf
from sentence_transformers import SentenceTransformer
import embedexp.core.config  # the resolvers the run's config uses
from embedexp.model.build import build_embedder

run, folder = sys.argv[1], sys.argv[2]
texts = ["A fast text editor for the terminal", "Chess engine", "Library for parsing JSON documents in C"]
trained = build_embedder(OmegaConf.load(f"{run}/.hydra/config.yaml"), adapter_path=f"{run}/adapter", trainable=False)
exported = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
vectors = exported.encode(texts, normalize_embeddings=True)
print(json.dumps({"max_abs_diff": float(np.abs(vectors - trained.encode(texts)).max()),
                  "modules": [m.__class__.__module__ + "." + m.__class__.__name__ for m in exported]}))
"""


def the_run(folder) -> tuple:
    """The single run folder under `folder` and its metrics."""
    (metrics,) = folder.glob("**/metrics.json")
    return metrics.parent, json.loads(metrics.read_text())


def test_a_pooling_with_options_from_the_users_folder_works_everywhere(installed):  # noqa: F811 - the fixture
    venv, env, root = installed
    before = snapshot(venv)
    user = root / "contract"
    (user / "my_conf" / "pooling").mkdir(parents=True)
    (user / "my_poolings.py").write_text((Path(__file__).parent / "user_poolings.py").read_text())
    (user / "my_conf" / "pooling" / "power_mean.yaml").write_text(POOLING_YAML)
    env = with_shared_data(dict(env, PYTHONPATH=str(user)))
    options = ["pooling=power_mean", "pooling.power=3", "pooling.exclude_prompt=true", SEARCHPATH]

    # train: both options reach the pooling, its saved config and the run's metrics
    run(["embedexp-train", *SMALL, *options, "hydra.run.dir=outputs/trained"], user, env)
    trained, metrics = the_run(user / "outputs" / "trained")
    assert metrics["choices"]["pooling"] == "power_mean"
    saved = json.loads((trained / "adapter" / "pooling" / "config.json").read_text())
    assert saved == {"power": 3, "exclude_prompt": True}

    # eval: the saved adapter with the same pooling scores what the run's last evaluation scored
    run(["embedexp-eval", "model=tiny", "tasks=tiny", "eval.precision=32", *options, f"adapter_path={trained}/adapter",
         "hydra.run.dir=outputs/evaluated"], user, env)  # fmt: skip
    with (user / "outputs" / "evaluated" / "eval_results.csv").open() as handle:
        (row,) = csv.DictReader(handle)
    assert row["pooling"] == "PowerMeanPooling"
    assert float(row["clustering_mean"]) == pytest.approx(metrics["val/clustering_mean"], abs=1e-6)

    # export: all three forms pass their self-check against the trained embedder
    run(["embedexp-export", f"run_dir={trained}", "hydra.run.dir=outputs/exported"], user, env)
    folder = trained / "export" / "sentence_transformers"
    manifest = json.loads((folder / "embedexp_manifest.json").read_text())
    assert manifest["pooling"] == {"target": "my_poolings.PowerMeanPooling", "config": saved, "folder": "pooling"}
    assert manifest["selfcheck"]["passed"] and manifest["name"].endswith("-power_mean-eol")
    assert (trained / "export" / "adapter" / "pooling" / "config.json").is_file()
    modules = json.loads((folder / "modules.json").read_text())
    assert modules[1]["type"] == "my_poolings.PowerMeanPooling"  # as sentence-transformers records any module
    assert json.loads((folder / modules[1]["path"] / "config.json").read_text()) == saved

    # plain sentence-transformers: the exported folder gives the trained embedder's vectors
    printed = run([venv / "bin" / "python", "-c", COMPARE, trained, folder], user, env).stdout
    compared = json.loads(printed.strip().splitlines()[-1])
    assert compared["modules"][1] == "my_poolings.PowerMeanPooling"
    assert compared["max_abs_diff"] < 1e-5

    # sweep over an option: every value is its own configuration, with its own zero-shot cache entry
    cache = user / "zero_shot_cache"
    sweep = ["-m", *SMALL, "pooling=power_mean", "pooling.power=1,3", SEARCHPATH, "hydra.sweep.dir=outputs/sweep"]
    run(["embedexp-train", *sweep, f"callbacks.clustering_eval.zero_shot_cache_dir={cache}"], user, env)
    jobs = {
        yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["pooling"]["power"]: json.loads(
            (job / "metrics.json").read_text()
        )
        for job in sorted((user / "outputs" / "sweep").glob("[0-9]*"))
    }
    assert set(jobs) == {1, 3} and all(metrics["run/status"] == "finished" for metrics in jobs.values())
    assert len(list(cache.glob("*.json"))) == 2  # one zero-shot cache key per option value
    assert jobs[1]["zero_shot/clustering_mean"] != jobs[3]["zero_shot/clustering_mean"]
    assert snapshot(venv) == before  # nothing written into the installation
