"""Analysis of trained models and sweeps: attention maps (`attention/`) and the sweep report (`report/`)."""
