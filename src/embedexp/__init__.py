"""embedexp: decoder-only LLMs as text-embedding models, one Hydra config override per ablation."""

__version__ = "0.1.0"
