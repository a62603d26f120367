"""Studies in Optuna storage: create and resume, list, export, and serve in optuna-dashboard."""
