"""The stage functions of `tasks/` as Prefect tasks, shared by both flows (`task=` picks the pipeline)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import clean, evaluate, ingest, register, split, tokenize, train, vocab

# Retries only where a retry can help: a re-run of train resumes from its epoch checkpoint, and
# register may meet a busy SQLite store ("database is locked") when runs overlap.
ingest_task = task(ingest.run, name="ingest", cache_policy=NO_CACHE)
clean_task = task(clean.run, name="clean", cache_policy=NO_CACHE)
tokenize_task = task(tokenize.run, name="tokenize", cache_policy=NO_CACHE)
split_task = task(split.run, name="split", cache_policy=NO_CACHE)
vocab_task = task(vocab.run, name="vocab", cache_policy=NO_CACHE)
train_task = task(train.run, name="train", retries=1, cache_policy=NO_CACHE)
evaluate_task = task(evaluate.run, name="evaluate", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
register_task = task(register.run, name="register", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
