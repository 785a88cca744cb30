"""The model: prompt -> tokens -> backbone + LoRA -> pooling -> `Embedder`, plus attention capture and prefix cache."""
