"""The same-category sources (`embedexp.data.categories`) over the offline labels this machine has: debtags of Debian
packages, manual page sections, the Python package of a docstring, a dictionary definition's part of speech.

Each reuses its corpus loader (and cache): the Debian corpus' training split (its archive *section* is the Debian
tasks' label, so no source pairs on it), the manual-page and docstring corpora, the GCIDE files.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from embedexp.core.errors import ConfigError, DataError
from embedexp.data.categories import CategoryPairs
from embedexp.data.corpus_cache import cached_records
from embedexp.data.debian import load_corpus, load_tags, train_texts
from embedexp.data.dictionary import DISTRIBUTION, data_files, dictionary_entries, pos_records
from embedexp.data.docstrings import DocstringPairs
from embedexp.data.manpages import ManPagePairs

log = logging.getLogger(__name__)
# debtags facets that say what a package is about (role, interface, implemented-in, ... say how it is built)
TOPIC_FACETS = (
    "admin",
    "devel",
    "field",
    "game",
    "hardware",
    "mail",
    "network",
    "office",
    "protocol",
    "science",
    "security",
    "sound",
    "use",
    "web",
    "works-with",
    "works-with-format",
)


def choose_field(origin: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` if it is one of `allowed`, else a ConfigError naming `<origin>.text_field`."""
    if value not in allowed:
        raise ConfigError(f"{origin}.text_field must be one of {allowed}, got {value!r}")
    return value


@dataclass
class DebtagPairs(CategoryPairs):
    """Two Debian packages (training split, other source packages) sharing a debtag of a topic facet: each package's
    rarest tag of `facets` that at least `min_families` source packages carry is its category."""

    facets: list = field(default_factory=lambda: list(TOPIC_FACETS))
    text_field: str = "long"  # long: the long description; short: the one-line summary
    min_families: int = 5

    name: ClassVar[str] = "debtag"

    def category_records(self) -> list[dict]:
        """Training-split descriptions labelled by their rarest topic debtag."""
        text_field = choose_field(self.origin, self.text_field, ("long", "short"))
        tags, facets = load_tags(self.cache_dir), set(self.facets)
        if not tags:
            raise DataError(f"{self.origin}: this machine's apt records carry no debtags (`Tag:` fields)")
        records = [r for r in train_texts(load_corpus(self.cache_dir), text_field) if r["package"] in tags]
        topical = {r["package"]: [t for t in tags[r["package"]] if t.split("::")[0] in facets] for r in records}
        families = Counter(tag for tag, _ in {(t, r["source"]) for r in records for t in topical[r["package"]]})
        labelled = []
        for record in records:
            usable = [t for t in topical[record["package"]] if families[t] >= self.min_families]
            if usable:
                category = min(usable, key=lambda t: (families[t], t))
                labelled.append({"text": record[text_field], "category": category, "family": record["source"]})
        log.info("%s: %d packages under %d debtags", self.origin, len(labelled), len({r["category"] for r in labelled}))
        return labelled


@dataclass
class ManSectionPairs(CategoryPairs):
    """Two manual pages of the same section (1 commands, 5 file formats, 7 overviews, 8 administration), of other
    program families; texts: the NAME summary (`text`) or the DESCRIPTION paragraph (`text_pos`)."""

    root: str = "/usr/share/man"
    sections: list = field(default_factory=lambda: [1, 5, 7, 8])
    render_per_family: int = 500
    text_field: str = "text_pos"

    name: ClassVar[str] = "man-section"

    def category_records(self) -> list[dict]:
        """The manual-page corpus (built and cached as `ManPagePairs` does), labelled by the page's section."""
        text_field = choose_field(self.origin, self.text_field, ("text", "text_pos"))
        pages = ManPagePairs(
            root=self.root, sections=self.sections, render_per_family=self.render_per_family, cache_dir=self.cache_dir
        )
        pages.origin = self.origin
        return [
            {"text": r[text_field], "category": r["page"].rsplit(".", 1)[-1][:1], "family": r["family"]}
            for r in pages.records()
            if "." in r.get("page", "")
        ]


@dataclass
class DocstringPackagePairs(CategoryPairs):
    """Two docstrings of the same Python package (top-level package; stdlib modules one by one); texts: the
    summary (`text`) or the first prose paragraph (`text_pos`)."""

    roots: list | None = None
    parse_per_family: int = 300
    text_field: str = "text"

    name: ClassVar[str] = "package"

    def category_records(self) -> list[dict]:
        """The docstring corpus (built and cached as `DocstringPairs` does), labelled by its package."""
        text_field = choose_field(self.origin, self.text_field, ("text", "text_pos"))
        docstrings = DocstringPairs(roots=self.roots, parse_per_family=self.parse_per_family, cache_dir=self.cache_dir)
        docstrings.origin = self.origin
        # no finer family than the package: two distinct docstrings of it pair up
        return [{"text": r[text_field], "category": r["family"], "family": r[text_field]} for r in docstrings.records()]


@dataclass
class PartOfSpeechPairs(CategoryPairs):
    """Two GCIDE definitions (other headwords) of the same word class: noun, verb, adjective, adverb, ..."""

    text_field: str = "definition"  # definition; entry: `headword: definition`

    name: ClassVar[str] = "part-of-speech"
    version: ClassVar[int] = 1

    def category_records(self) -> list[dict]:
        """The definitions labelled by word class, cached under `cache_dir/dictionary_pos/`."""
        text_field = choose_field(self.origin, self.text_field, ("definition", "entry"))
        if not data_files():
            raise DataError(f"{self.origin}: the part-of-speech source needs the `{DISTRIBUTION}` package")
        build = lambda: [r for entry in dictionary_entries() for r in pos_records(entry)]  # noqa: E731
        records = cached_records(self.cache_dir, "dictionary_pos", self.version, build)
        if text_field == "entry":
            return [{**r, "text": f"{r['entry']}: {r['text']}"} for r in records]
        return records
