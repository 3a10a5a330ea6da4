"""Insight KB analysis engine: pure-torch training, profiling, ablation and experiments.

Nothing here imports Django. This package module, specs, changes, plans, run_settings,
profiles and stats stay free of torch so the web process can validate specs, changes and run
settings, and plan experiments, without loading it; import
the torch modules (builder, datasets, training, activations, ablation, experiments,
benchmarks) explicitly where they are needed.
"""
