"""Positive-pair data: sources (files, HF datasets, the offline Debian corpus) and the DataModule."""
