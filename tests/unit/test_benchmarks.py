"""The benchmark's bookkeeping: ratios, the results file and its merge, the memory sampler."""

import json
import sys

import torch

from benchmarks import bench, report
from benchmarks.segmentation import peak_rss_mb
from benchmarks.training import tutorial_tokens_per_s


def test_measure_ratio_and_files(tmp_path):
    m = report.Measure("x", 30.0, "MB/s", "one process", 15.0, "cmd", target="≥ 1.8x", met=True, note="n")
    assert m.ratio == 2.0
    assert report.Measure("skipped", None, "s", "ref", None, "cmd").ratio is None
    out, md = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    bench.save(report.stamp([m], "box"), out, md)
    rows = json.loads(out.read_text())
    assert {"name", "value", "unit", "reference_value", "ratio", "command", "machine", "date"} <= set(rows[0])
    assert rows[0]["machine"] == "box" and rows[0]["ratio"] == 2.0
    assert "| x | 30 MB/s | one process: 15 | 2 |" in md.read_text()


def test_partial_run_keeps_other_measures(tmp_path):
    out, md = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    bench.save(
        report.stamp([report.Measure("a", 1.0, "s", "r", 2.0, "c"), report.Measure("b", 1.0, "s", "r", 2.0, "c")], "h"),
        out,
        md,
    )
    bench.save(report.stamp([report.Measure("b", 5.0, "s", "r", 2.0, "c")], "h"), out, md)
    rows = {r["name"]: r for r in json.loads(out.read_text())}
    assert rows["a"]["value"] == 1.0 and rows["b"]["value"] == 5.0


def test_peak_rss_counts_child_processes():
    # The parent is small; a child it starts holds ~300 MiB: the figure must include the child.
    child = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    peak, _ = peak_rss_mb([sys.executable, "-c", parent])
    assert peak > 300


def test_tutorial_reference_loop_trains():
    stream = torch.randint(0, 50, (400,))
    assert tutorial_tokens_per_s(stream, vocab_size=50, seconds=0.3) > 0
