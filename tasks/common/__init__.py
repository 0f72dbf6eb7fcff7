"""Plumbing every stage shares: params, the CLI, errors, atomic IO, lineage, MLflow tracking."""
