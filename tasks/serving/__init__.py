"""Inference: lyrics sampling, the review predictor, the MLflow pyfunc wrappers (no training imports)."""
