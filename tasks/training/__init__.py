"""The training loop both tasks share, device and precision, distributed helpers, run bookkeeping."""
