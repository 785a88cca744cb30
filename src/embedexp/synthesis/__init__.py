"""Synthetic positive pairs: sources, generators (paraphrase, back-translation, noise, dropout), filters, shards.

Run it with `python -m embedexp synth` (config `conf/synth.yaml`); train on its output with `data=synthetic`.
"""
