"""Training and prediction code of the shipped models, one module per model (named by its definition)."""
