"""The model card (README.md) of an export: how to load it, what it computes, how it was trained and how it scores."""

from __future__ import annotations

from typing import Any

import yaml

USAGE = {
    "sentence_transformers": """```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{path}"{trust})
vectors = model.encode(["A fast text editor", "Chess engine"])  # the prompt template is applied by the tokenizer
```""",
    "merged": """```python
from embedexp.export import load_export  # or: transformers.AutoModel / AutoTokenizer + the recipe below

model = load_export("{path}")
vectors = model.encode(["A fast text editor", "Chess engine"])
```""",
    "adapter": """```python
from peft import PeftModel
from transformers import AutoModel

base = AutoModel.from_pretrained("{base}")
model = PeftModel.from_pretrained(base, "{path}")
# or, with prompt and pooling applied: embedexp.export.load_export("{path}").encode(texts)
```""",
}

FORM_TEXT = {
    "sentence_transformers": "a sentence-transformers folder (Transformer with merged weights, Pooling, Normalize)",
    "merged": "the base decoder with the LoRA weights merged in (plain transformers; no adapter files)",
    "adapter": "the LoRA adapter alone (peft format); load it onto the base model",
}


def _front_matter(manifest: dict[str, Any]) -> str:
    """Hugging Face model-card metadata."""
    form = manifest["format"]
    meta = {
        "library_name": {"sentence_transformers": "sentence-transformers", "adapter": "peft"}.get(form, "transformers"),
        "pipeline_tag": "sentence-similarity" if form == "sentence_transformers" else "feature-extraction",
        "tags": ["embedexp", "text-embeddings", "clustering", manifest["pooling"]["target"].rsplit(".", 1)[-1]],
        "language": ["en"],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---"


def _recipe(manifest: dict[str, Any]) -> str:
    """Prompt, pooling, truncation and normalisation, and where each is implemented in this form."""
    st = manifest.get("sentence_transformers") or {}
    lines = [
        "| | |",
        "|---|---|",
        f"| prompt | `{manifest['prompt']['name']}`: `{manifest['prompt']['template']}` |",
        f"| pooling | `{manifest['pooling']['target']}` {manifest['pooling']['config']} |",
        f"| max length | {manifest['max_length']} tokens; the text is truncated, never the prompt |",
        f"| embedding | {manifest['embed_dim']} dimensions, L2-normalised, cosine similarity |",
        *(
            [f"| Matryoshka truncation | the first {manifest['truncate_dim']} dimensions, re-normalised |"]
            if manifest.get("truncate_dim")
            else []
        ),
        f"| parameters | {manifest['n_parameters']:,} |",
    ]
    if manifest["format"] == "sentence_transformers":
        lines.append(
            "\nThe prompt template is applied by the tokenizer: its post-processor inserts the token ids of the text "
            "before and after `{text}` (sentence-transformers prompts can only prepend a string, and tokenizing "
            "prompt and text as one string changes the ids at the boundaries). `model.encode(texts)` therefore "
            "applies it by default; a sentence-transformers `prompt=` is inserted before the text, inside the template."
        )
        if manifest.get("truncate_dim"):
            lines.append(
                f"\nThe truncation is sentence-transformers' own `truncate_dim` ({manifest['truncate_dim']}, saved in "
                "`config_sentence_transformers.json`): it keeps the first dimensions of the normalised vector, so "
                "use `model.encode(texts, normalize_embeddings=True)` for unit vectors, or `model.similarity` (cosine)."
            )
        if st.get("custom_modules"):
            lines.append(
                "\nThis pooling has no sentence-transformers equivalent: `modules.json` names "
                f"`embedexp.export.st_modules.EmbedexpTransformer` and `{manifest['pooling']['target']}`, so loading "
                "needs both importable (`pip install embedexp`, and the pooling's own module) and "
                "`SentenceTransformer(path, trust_remote_code=True)`."
            )
        else:
            lines.append(f"\nPooling is sentence-transformers' own `{st.get('pooling_mode')}` mode: no custom code.")
    return "\n".join(lines)


def _selfcheck(manifest: dict[str, Any]) -> str:
    """The self-check result table."""
    check = manifest.get("selfcheck")
    if not check:
        return "Not run."
    rows = ["| export padding / reference padding | min cosine |", "|---|---|"]
    rows += [f"| {pair} | {min(values):.7f} |" for pair, values in check["pairs"].items()]
    return (
        f"Reloaded from disk, this export embedded {check['n_probes']} fixed probe texts; every cosine similarity to "
        f"the training module's embeddings (float32) is at least {check['threshold']} "
        f"(minimum {check['min_cosine']:.7f}).\n\n" + "\n".join(rows)
    )


def _scores(records: dict[str, Any]) -> str:
    """Clustering V-measure recorded by the training run."""
    metrics = records.get("metrics") or {}
    tasks = sorted(k.split("/", 1)[1] for k in metrics if k.startswith("val/") and k != "val/loss")
    parts = []
    if tasks:
        rows = ["| task | zero-shot | fine-tuned |", "|---|---|---|"]
        for task in tasks:
            zero = metrics.get(f"zero_shot/{task}")
            rows.append(f"| {task} | {'' if zero is None else f'{zero:.4f}'} | {metrics[f'val/{task}']:.4f} |")
        parts.append("\n".join(rows))
    if records.get("clustering_md"):
        parts.append("Every evaluation of the run (`clustering_results.md`):\n\n" + records["clustering_md"])
    if not parts:
        return "No scores recorded (no run folder given)."
    note = "V-measure from mteb, scored during training (bf16 autocast on the CPU unless configured otherwise)."
    return note + "\n\n" + "\n\n".join(parts)


def _data(records: dict[str, Any]) -> str:
    """The training data section: the run's data config and data manifest, if any."""
    parts = []
    config = yaml.safe_load(records["config_yaml"]) if records.get("config_yaml") else None
    if config and config.get("data"):
        parts.append("Data config of the run:\n\n```yaml\n" + yaml.safe_dump(config["data"], sort_keys=False) + "```")
    if records.get("data_manifest"):
        parts.append("Data manifest:\n\n```\n" + records["data_manifest"].strip() + "\n```")
    return "\n\n".join(parts) or "Not recorded."


def model_card(manifest: dict[str, Any], records: dict[str, Any], path: str) -> str:
    """Render README.md for an export folder."""
    form = manifest["format"]
    trust = ", trust_remote_code=True" if (manifest.get("sentence_transformers") or {}).get("custom_modules") else ""
    usage = USAGE[form].format(path=path, trust=trust, base=manifest.get("base_model_name_or_path") or "<base model>")
    config = records.get("config_yaml")
    sections = [
        _front_matter(manifest),
        f"# {manifest['name']}\n\nA text-embedding model made with embedexp from a decoder-only LLM "
        f"(`{manifest['backbone'].get('name_or_path') or manifest['backbone'].get('_target_')}`): prompt, pooling and "
        f"LoRA contrastive fine-tuning. This folder is {FORM_TEXT[form]}.",
        "## Usage\n\n" + usage,
        "## Embedding recipe\n\n" + _recipe(manifest),
        "## Self-check\n\n" + _selfcheck(manifest),
        "## Clustering scores\n\n" + _scores(records),
        "## Training data\n\n" + _data(records),
        "## Training config\n\n" + (f"```yaml\n{config}```" if config else "Not recorded."),
        "## Source\n\n" + "\n".join(f"- {k}: `{v}`" for k, v in manifest.get("source", {}).items() if v),
    ]
    return "\n\n".join(sections) + "\n"
