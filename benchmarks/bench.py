"""`make bench`: measure speed, memory and reruns side by side; write benchmarks/results.json and
BENCHMARKS.md.

    python -m benchmarks.bench [--lyrics PATH] [--only reruns,training,segmentation,memory,gpu,serving]

Runs in a scratch copy of the project under the system temp dir (the working tree's data, MLflow
store and Prefect state are not touched). With --only, the other measures already in
results.json are kept. `serving` load-tests the registered reviews champion of the working tree's
store (read only; skipped when there is none).
"""

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from benchmarks import gpu, report, reruns, scratch, segmentation, serving, training
from tasks import clean, split, tokenize, vocab
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import load_params
from tasks.text.vocab import load_vocab, tokens_by_split
from tasks.training.device import set_threads

ROOT = scratch.ROOT
MEASURES = ("reruns", "training", "segmentation", "memory", "gpu", "serving")
log = logging.getLogger("benchmarks")


def lyrics_project(work: Path, corpus: Path, run_flow: bool) -> tuple[Path, list]:
    """The scratch lyrics project, with the rerun measures when `run_flow` (their full flow run
    leaves the split and vocabulary the training measures use)."""
    project = work / "project"
    env = scratch.make_lyrics_project(project, corpus)
    return project, reruns.measure(project, env) if run_flow else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lyrics",
        default="../shared/datasets/jaychou_lyrics.txt",
        help="lyrics corpus file for the lyrics measures (default: %(default)s)",
    )
    parser.add_argument("--only", default=",".join(MEASURES), help="comma-separated subset of: " + ", ".join(MEASURES))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results.json"))
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is logged)")
    args = parser.parse_args()
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(only) - set(MEASURES)
    if unknown:
        raise PipelineError(f"--only {','.join(sorted(unknown))}: unknown measure; choose from {', '.join(MEASURES)}")
    corpus = Path(args.lyrics).resolve()
    if {"reruns", "training"} & set(only) and not corpus.is_file():
        raise PipelineError(f"{corpus}: lyrics corpus not found; pass one with --lyrics PATH (make bench LYRICS=PATH)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    host = report.machine()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    log.info("scratch directory %s", work)
    results: list[report.Measure] = []
    try:
        if {"reruns", "training"} & set(only):
            project, results = lyrics_project(work, corpus, "reruns" in only)
            if "training" in only:
                results += measure_training(project)
        os.chdir(ROOT)  # the reviews measures read the repo's params.yaml; their paths point into `work`
        params = load_params("params.yaml")
        if "segmentation" in only:
            results += segmentation.speed(work / "seg")
        if "memory" in only:
            results += segmentation.memory(work / "seg")
        if "gpu" in only:
            results += gpu.measure(params, vocab_size=6000)
        if "serving" in only:
            results += serving.measure()
    finally:
        os.chdir(ROOT)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    save(report.stamp(results, host), Path(args.out), Path(args.markdown))


def measure_training(project: Path) -> list[report.Measure]:
    """The training measures, on the scratch project's split and vocabulary (made here when the
    flow did not run)."""
    os.chdir(project)
    params = load_params("params.yaml")
    lp = params.lyrics
    if not Path(lp.vocab.output).exists():
        for stage in (clean, tokenize, split, vocab):
            stage.run(params)
    set_threads(getattr(lp.train, "num_threads", 0))
    return training.measure(params, tokens_by_split(lp.split.output), load_vocab(lp.vocab.output))


def save(results: list[report.Measure], out: Path, markdown: Path) -> None:
    """Merge into results.json by measure name (a partial run keeps the other figures), then
    rewrite BENCHMARKS.md from the whole set."""
    fresh = {m.name for m in results}
    kept = [report.Measure(**m) for m in json.loads(out.read_text(encoding="utf-8"))] if out.exists() else []
    merged = [m for m in kept if m.name not in fresh] + results
    order = {name: i for i, name in enumerate(ORDER)}
    merged.sort(key=lambda m: order.get(m.name, len(order)))
    report.write_results(merged, out, markdown)
    for m in results:
        log.info(
            "%s: %s %s (reference %s %s, ratio %s)",
            m.name,
            report.fmt(m.value),
            m.unit,
            m.reference,
            report.fmt(m.reference_value),
            report.fmt(m.ratio),
        )


ORDER = (
    "segmentation_jieba_pipeline",
    "segmentation_rjieba",
    "tokenize_peak_rss_50x",
    "train_tokens_per_s_tutorial_size",
    "train_tokens_per_s_default",
    "train_flops_fraction_of_matmul",
    "time_to_half_kneser_ney_val_ppl",
    "prefect_flow_noop_rerun",
    "dvc_repro_noop",
    "gpu_lm_bf16_vs_fp32",
    "gpu_classifier_bf16_vs_fp32",
    "serving_latency_p99",
    "serving_throughput",
    "serving_rss_after_load",
)


if __name__ == "__main__":
    run_cli(main)
