"""Hyperparameter sweeps with Optuna (flows/sweep.py drives them): the search space of params.yaml
`sweep:` (space.py), one trial's training with per-epoch pruning (objective.py), the study and its
ask/tell loop (study.py), and what a finished sweep writes and logs (report.py). No Prefect here:
the flow passes in how a trial is submitted."""
