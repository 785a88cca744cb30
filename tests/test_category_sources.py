"""Same-category positives: a text paired with another text of its offline label (debtag, manual section, Python
package, part of speech), never with itself or its own family, seeded by data_seed, decontaminated, in the configs."""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from typing import ClassVar

import pytest

from embedexp.core.errors import ConfigError
from embedexp.data import category_sources
from embedexp.data.categories import CategoryPairs
from embedexp.data.category_sources import DebtagPairs, DocstringPackagePairs, ManSectionPairs
from embedexp.data.dictionary import pos_records

from .conftest import TINY_OVERRIDES, compose_config


@dataclass
class ListCategories(CategoryPairs):
    """A category source over fixed records."""

    name: ClassVar[str] = "list"
    rows: ClassVar[list] = []

    def category_records(self) -> list[dict]:
        return list(self.rows)


class Blocklist:
    """Stands in for EvaluationTexts: drops pairs with a blocked text on either side."""

    def __init__(self, blocked):
        self.blocked = blocked

    def drop(self, pairs, origin, limit=None):
        kept = [p for p in pairs if not self.blocked.intersection(p)]
        return kept[:limit] if limit else kept


def rows(categories: dict[str, int], families: int = 3) -> list[dict]:
    """`n` distinct texts per category, spread over `families` families (text says its category and family)."""
    return [
        {
            "text": f"{cat} text {i} of family {i % families} {'x' * i}",
            "category": cat,
            "family": f"{cat}{i % families}",
        }
        for cat, n in categories.items()
        for i in range(n)
    ]


def category_of(text: str) -> str:
    return text.split()[0]


def family_of(text: str) -> str:
    return text.split()[0] + text.split()[5]


def test_each_positive_is_another_text_of_the_anchor_category_from_another_family():
    ListCategories.rows = rows({"alpha": 12, "beta": 12, "gamma": 12})
    ListCategories.rows += [{"text": "lonely text of one family", "category": "solo", "family": "s"}]
    pairs = ListCategories(seed=1).load()
    assert len(pairs) == 36  # every text an anchor once; the one-family category gives none
    assert all(category_of(a) == category_of(p) and family_of(a) != family_of(p) for a, p in pairs)
    assert ListCategories(seed=1).load() == pairs and ListCategories(seed=2).load() != pairs
    assert len({category_of(a) for a, _ in pairs[:6]}) > 1  # anchors drawn across categories, not in label order


def test_the_per_category_cap_the_pair_limit_and_the_exclusion_apply():
    ListCategories.rows = rows({"alpha": 40, "beta": 5})
    capped = ListCategories(seed=0, max_per_category=5).load()
    assert sorted(category_of(a) for a, _ in capped) == ["alpha"] * 5 + ["beta"] * 5
    everything = ListCategories(seed=0).load()
    blocked = {everything[0][0], everything[1][1]}
    kept = ListCategories(seed=0, max_pairs=10, exclude=Blocklist(blocked)).load()
    assert len(kept) == 10 and not any(blocked.intersection(pair) for pair in kept)


def test_debtag_pairs_use_the_training_split_the_rarest_topic_tag_and_never_the_section(monkeypatch):
    corpus, tags = [], {}
    for i in range(6):  # six source packages tagged game::arcade and devel::library, all in section "games"
        corpus.append(
            dict(
                package=f"arc{i}", source=f"arc{i}", section="games", short="s", long=f"arcade game {i}", split="train"
            )
        )
        tags[f"arc{i}"] = ["devel::library", "game::arcade", "role::program"]
    for i in range(6):  # six libraries, section "libs"; role:: is not a topic facet
        corpus.append(
            dict(package=f"lib{i}", source=f"lib{i}", section="libs", short="s", long=f"library {i}", split="train")
        )
        tags[f"lib{i}"] = ["devel::library", "role::shared-lib"]
    corpus.append(dict(package="ev", source="ev", section="games", short="s", long="arcade game 0", split="eval"))
    corpus.append(dict(package="ev2", source="ev2", section="games", short="s", long="held out", split="eval"))
    tags["ev2"] = ["game::arcade"]
    monkeypatch.setattr(category_sources, "load_corpus", lambda cache_dir: corpus)
    monkeypatch.setattr(category_sources, "load_tags", lambda cache_dir: tags)
    records = DebtagPairs(min_families=5).category_records()
    by_text = {r["text"]: r["category"] for r in records}
    assert "arcade game 0" not in by_text and "held out" not in by_text  # an evaluation text, the evaluation split
    assert {by_text[f"arcade game {i}"] for i in range(1, 6)} == {"game::arcade"}  # rarer than devel::library
    assert {by_text[f"library {i}"] for i in range(6)} == {"devel::library"}
    pairs = DebtagPairs(min_families=5, seed=3).load()
    assert all(a.split()[0] == p.split()[0] and a != p for a, p in pairs)
    with pytest.raises(ConfigError, match=r"data\.source\.text_field"):
        DebtagPairs(text_field="section").category_records()


MAN_PAGE = """.TH {name} {section} "2026" "x" "x"
.SH NAME
{name} \\- {summary}
.SH DESCRIPTION
{name} is a program whose description paragraph has enough words to count as prose number {n}.
"""


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
def test_man_section_pairs_pair_pages_of_one_section(tmp_path):
    for section, names in {1: ["alpha", "bravo", "charlie"], 5: ["delta.conf", "echo.conf", "foxtrot.conf"]}.items():
        (tmp_path / f"man{section}").mkdir()
        for n, name in enumerate(names):
            text = MAN_PAGE.format(name=name, section=section, summary=f"summary of {name} in section {section}", n=n)
            with gzip.open(tmp_path / f"man{section}" / f"{name}.{section}.gz", "wt") as handle:
                handle.write(text)
    source = ManSectionPairs(root=str(tmp_path), sections=[1, 5], cache_dir=str(tmp_path / "cache"), text_field="text")
    pairs = source.load()
    assert len(pairs) == 6 and all(a.split()[-1] == p.split()[-1] and a != p for a, p in pairs)


def test_docstring_package_pairs_pair_docstrings_of_one_package(tmp_path):
    for package in ("wobble", "sprocket"):
        folder = tmp_path / "site" / package
        folder.mkdir(parents=True)
        functions = "".join(
            f'def f{i}():\n    """The {package} helper number {i} does a thing.\n\n    It does that thing '
            f'carefully and thoroughly, {i} times over, for the {package} package."""\n'
            for i in range(3)
        )
        (folder / "__init__.py").write_text(functions)
    source = DocstringPackagePairs(roots=[str(tmp_path / "site")], cache_dir=str(tmp_path / "cache"))
    pairs = source.load()
    assert len(pairs) == 6 and all(a.split()[1] == p.split()[1] and a != p for a, p in pairs)


def test_part_of_speech_records_name_the_word_class():
    entry = {
        "entry": "ombrometer",
        "pos": [
            {"part_of_speech": "n.", "definitions": [{"text": "An instrument for measuring the rain that falls."}]},
            {"part_of_speech": "a. & n.", "definitions": [{"text": "A mixed label the source leaves out of it."}]},
        ],
    }
    assert pos_records(entry) == [
        {
            "text": "An instrument for measuring the rain that falls.",
            "entry": "ombrometer",
            "category": "noun",
            "family": "ombrometer",
        }
    ]


@pytest.mark.parametrize("option", ["debtags", "man_sections", "docstring_packages", "dictionary_pos"])
def test_each_category_source_composes_decontaminated_seeded_by_data_seed_and_weighted(tmp_path, option):
    overrides = [*TINY_OVERRIDES, "data=one_source", f"data/source@data.sources.only={option}", "data_seed=7"]
    cfg = compose_config("train", [*overrides, "seed=3"], tmp_path)
    source = cfg.data.sources.only
    assert source._target_.startswith("embedexp.data.category_sources.")
    assert source.exclude._target_ == "embedexp.data.contamination.EvaluationTexts"
    assert source.seed == 7 and cfg.data.seed == 3 and source.weight == 1.0
    mixture = compose_config(
        "train", [*TINY_OVERRIDES, "data=mixture", f"+data/source@data.sources.x={option}"], tmp_path
    )
    assert mixture.data.sources.x.exclude == cfg.contamination.texts


def test_what_the_sources_dropped_reaches_the_contamination_record(tmp_path):
    from collections import Counter

    from embedexp.data.datamodule import PairDataModule

    class Dropping:
        dropped = {"data.source": Counter({("DebianShortDescSectionClustering", "near"): 3})}

    ListCategories.rows = rows({"alpha": 12, "beta": 12})
    data = PairDataModule(ListCategories(exclude=Blocklist(set())), batch_size=4)
    data.source.exclude.dropped = Dropping.dropped
    data.setup("fit")
    assert data.dropped == {"data.source": {"DebianShortDescSectionClustering near": 3}}
