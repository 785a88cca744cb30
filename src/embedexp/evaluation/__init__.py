"""Clustering evaluation through mteb: tasks, the model wrapper, the Lightning callback and result tables."""
