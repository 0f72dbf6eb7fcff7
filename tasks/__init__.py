"""Stage modules of the pipeline: plain Python, runnable as `python -m tasks.<stage>`."""
