"""The hyper-parameter search chapter: Optuna studies over fine-tuning runs."""
