"""The served review model under load: start `mlflow models serve` for a model URI on 127.0.0.1 and
a free port, send a bounded number of mixed requests (blank, punctuation-only, unknown words, short
and medium reviews, 50 KB texts) from a thread pool, and report latency, throughput, errors, the
status contract of each answer and the server's memory; then one body just over the pyfunc's
request limit, which must be refused with HTTP 400.

    python -m benchmarks.serving [--model models:/review-sentiment@champion] [--requests 2000]
                                 [--concurrency 8] [--max-seconds 900]

Traffic goes to 127.0.0.1 only; the run stops by itself (a bounded count, a deadline, a timeout
per request) and stops the server it started.
"""

import argparse
import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil

from benchmarks.report import Measure
from benchmarks.scoring_server import PeakRss, served, tree_rss_mib
from benchmarks.serving_workload import MIX, body, contract_error, make_text, percentile, post, workload
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.serving.model_uri import champion_uri, registered, tracking_uri
from tasks.serving.reviews_pyfunc import MAX_REQUEST_CHARS

CMD = "python -m benchmarks.bench --only serving"


class Tally:
    """What the requests of one load test met: latency per kind of text, errors, contract breaks."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {k: [] for k in MIX}
        self.errors, self.broken = Counter(), Counter()

    def send(self, invocations: str, kind: str, text: str, timeout_s: float) -> None:
        t0 = time.perf_counter()
        try:
            code, payload = post(invocations, body([text]), timeout_s)
        except OSError as exc:
            self.errors[type(exc).__name__] += 1
            return
        self.latencies[kind].append(1000 * (time.perf_counter() - t0))
        if code != 200:
            self.errors[f"HTTP {code}"] += 1
            return
        answers = json.loads(payload)["predictions"]
        why = contract_error(kind, answers[0]) if len(answers) == 1 else f"{len(answers)} answers"
        if why:
            self.broken[f"{kind}: {why}"] += 1

    def figures(self, wall: float) -> dict:
        every = [ms for values in self.latencies.values() for ms in values]
        return {
            "answered": len(every),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "contract_breaks": sum(self.broken.values()),
            "contract_break_kinds": dict(self.broken),
            "wall_s": round(wall, 2),
            "throughput_rps": round(len(every) / wall, 1),
            "p50_ms": round(percentile(every, 50), 1) if every else None,
            "p99_ms": round(percentile(every, 99), 1) if every else None,
            "p50_ms_by_kind": {k: round(percentile(v, 50), 1) for k, v in self.latencies.items() if v},
        }


def load_test(url: str, server: psutil.Process, requests: int = 2000, concurrency: int = 8,
              max_seconds: float = 900, timeout_s: float = 60, seed: int = 0) -> dict:  # fmt: skip
    """Send `requests` one-text requests at `concurrency` to url/invocations, stopping early at
    `max_seconds`; returns the figures (latency in ms, throughput, errors, contract breaks, RSS)."""
    invocations, work, tally = f"{url}/invocations", workload(requests, seed), Tally()
    for kind in MIX:  # warm-up, one of each kind, so lazy loading (jieba's dictionary) is not counted
        post(invocations, body([make_text(kind, random.Random(seed))]), timeout_s)
    deadline = time.monotonic() + max_seconds

    def one(item: tuple[str, str]) -> None:
        if time.monotonic() > deadline:
            tally.errors["not sent (deadline)"] += 1
        else:
            tally.send(invocations, *item, timeout_s)

    rss_before = tree_rss_mib(server)
    with PeakRss(server) as rss, ThreadPoolExecutor(max_workers=concurrency) as pool:
        t0 = time.perf_counter()
        list(pool.map(one, work))
        wall = time.perf_counter() - t0
    memory = {"rss_before_mib": round(rss_before, 1), "rss_after_mib": round(tree_rss_mib(server), 1)}
    return {"requests": requests, "concurrency": concurrency, **tally.figures(wall), **memory,
            "rss_peak_mib": round(rss.peak, 1)}  # fmt: skip


def over_limit(url: str, server: psutil.Process, chars: int = MAX_REQUEST_CHARS + 1, timeout_s: float = 120) -> dict:
    """One request whose text is `chars` characters (default: one over the pyfunc's limit): the HTTP
    status, the start of the error message, and the server's RSS after."""
    code, payload = post(f"{url}/invocations", body(["好" * chars]), timeout_s)
    try:
        message = json.loads(payload).get("message", "")
    except ValueError:
        message = payload[:200].decode(errors="replace")
    tail = message.rsplit("Error: ", 1)[-1]
    return {
        "chars": chars,
        "body_mb": round(len(body(["好" * chars])) / 1e6, 1),
        "status": code,
        "message": tail[:200],
        "rss_after_mib": round(tree_rss_mib(server), 1),
    }


def run(model_uri: str, tracking_uri: str, **load) -> dict:
    with served(model_uri, tracking_uri) as (url, server):
        figures = load_test(url, server, **load)
        figures["over_limit"] = over_limit(url, server)
    return {"model_uri": model_uri, **figures}


def measure(model_uri: str | None = None) -> list[Measure]:
    """The serving measures for `make bench`: the reviews champion of ./params.yaml (or model_uri),
    2,000 requests at concurrency 8; skipped when the store has no such model."""
    uri, store = model_uri or champion_uri("reviews"), tracking_uri()
    if not registered(uri, store):
        note = f"skipped: {uri} is not in {store} (make reviews registers it)"
        return [Measure("serving_latency_p99", None, "ms", "p50", None, CMD, note=note)]
    f = run(uri, store)
    note = (
        f"{f['requests']:,} one-text requests at concurrency {f['concurrency']} to `mlflow models serve -m {uri}` "
        f"on 127.0.0.1 (mixed: blank, punctuation, unknown words, short, 500-char and 50 KB texts): "
        f"{f['errors']} errors, {f['contract_breaks']} answers breaking the status contract, "
        f"{f['throughput_rps']} req/s; p50 by kind {f['p50_ms_by_kind']} ms; server RSS "
        f"{f['rss_before_mib']:.0f} → {f['rss_after_mib']:.0f} MiB (peak {f['rss_peak_mib']:.0f}); "
        f"a {f['over_limit']['body_mb']} MB body over the {MAX_REQUEST_CHARS:,}-character limit → HTTP "
        f"{f['over_limit']['status']}"
    )
    met = f["errors"] == 0 and f["contract_breaks"] == 0 and f["over_limit"]["status"] == 400
    target = "0 errors, every answer keeps the status contract, over-limit body → 400"
    return [
        Measure("serving_latency_p99", f["p99_ms"], "ms", "p50", f["p50_ms"], CMD, target=target, met=met, note=note),
        Measure("serving_throughput", f["throughput_rps"], "req/s", "–", None, CMD, target="", met=None),
        Measure("serving_rss_after_load", f["rss_after_mib"], "MiB", "after warm-up", f["rss_before_mib"], CMD,
                target="≤ 1.2x after warm-up (memory flat)", met=f["rss_after_mib"] <= 1.2 * f["rss_before_mib"]),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model URI (default: the reviews champion of params.yaml)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=900, help="stop sending after this (default 900)")
    args = parser.parse_args()
    uri, store = args.model or champion_uri("reviews"), tracking_uri()
    if not registered(uri, store):
        raise PipelineError(f"{uri} is not in {store}; train and register one with `make reviews`, or pass --model")
    figures = run(uri, store, requests=args.requests, concurrency=args.concurrency, max_seconds=args.max_seconds)
    print(json.dumps(figures, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    run_cli(main)
