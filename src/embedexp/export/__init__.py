"""Export a trained embedder as a LoRA adapter, a merged model or a sentence-transformers folder, each self-checked."""

from embedexp.export.core import export_from_config, export_model
from embedexp.export.load import LoadedExport, load_export, read_manifest
from embedexp.export.selfcheck import PROBE_TEXTS, SelfCheckError, check_export
from embedexp.export.source import ExportSource, load_export_source

__all__ = [
    "PROBE_TEXTS",
    "ExportSource",
    "LoadedExport",
    "SelfCheckError",
    "check_export",
    "export_from_config",
    "export_model",
    "load_export",
    "read_manifest",
    "load_export_source",
]
