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
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from benchmarks.report import Measure
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.serving.reviews_pyfunc import COLUMNS, MAX_REQUEST_CHARS

HOST = "127.0.0.1"  # the only host this module sends to
BIN = Path(sys.executable).parent  # the venv's bin: `mlflow models serve` starts `uvicorn` from PATH
STATUSES = {"ok", "empty", "unknown"}
REVIEWS = [
    "房间很干净，服务也好",
    "送餐太慢了，菜都凉了",
    "酒店位置不错，早餐一般",
    "前台态度冷淡，不推荐",
    "价格划算，下次还来",
    "快递很快，包装完好",
]
# kind → (share of requests, what the answer must say: the status, or None for any; truncated?)
MIX = {
    "short": (0.55, None, False),
    "medium": (0.15, None, None),
    "long_50kb": (0.05, None, True),
    "empty": (0.05, "empty", False),
    "blank": (0.05, "empty", False),
    "unknown_words": (0.10, "unknown", False),
    "punctuation": (0.05, "unknown", False),
}


def make_text(kind: str, rng: random.Random) -> str:
    if kind == "short":
        return rng.choice(REVIEWS)
    if kind == "medium":
        return "".join(rng.choice(REVIEWS) + "。" for _ in range(45))[:500]
    if kind == "long_50kb":
        text = ""
        while len(text.encode()) < 50_000:
            text += rng.choice(REVIEWS) + "。"
        return text
    if kind == "empty":
        return ""
    if kind == "blank":
        return rng.choice([" ", "   ", "\t", "\u3000"])
    if kind == "unknown_words":
        return " ".join("".join(rng.choice("bcdfghjkmpqvwxz") for _ in range(6)) for _ in range(3))
    return rng.choice(["！！！", "。。。", "~~~", "?!"])


def workload(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (kind, text) pairs in the MIX proportions, shuffled, deterministic for a seed."""
    rng = random.Random(seed)
    kinds = [k for k, (share, _, _) in MIX.items() for _ in range(round(share * n))]
    kinds = (kinds + ["short"] * n)[:n]
    rng.shuffle(kinds)
    return [(k, make_text(k, rng)) for k in kinds]


def body(texts: list[str]) -> bytes:
    return json.dumps({"dataframe_records": [{"text": t} for t in texts]}, ensure_ascii=False).encode()


def post(url: str, data: bytes, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def contract_error(kind: str, answer: dict) -> str | None:
    """Why an answer breaks the status contract for its kind of text, or None."""
    if set(answer) != set(COLUMNS):
        return f"columns {sorted(answer)}"
    status, truncated = answer["status"], answer["truncated"]
    _, want_status, want_truncated = MIX[kind]
    if status not in STATUSES or (want_status and status != want_status):
        return f"status {status!r}"
    if want_truncated is not None and truncated is not want_truncated:
        return f"truncated {truncated!r}"
    if (status == "ok") != (answer["label"] is not None) or (status == "ok") != (answer["probability"] is not None):
        return f"label/probability with status {status!r}"
    if status == "ok" and not 0 <= answer["probability"] <= 1:
        return f"probability {answer['probability']}"
    return None


def tree_rss_mib(proc: psutil.Process) -> float:
    """Resident memory of a process and its children (the mlflow CLI and its uvicorn worker)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):  # a child that just exited
            total += p.memory_info().rss
    return total / 2**20


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def served(model_uri: str, tracking_uri: str, startup_s: float = 300) -> Iterator[tuple[str, psutil.Process]]:
    """`mlflow models serve` for model_uri on 127.0.0.1 and a free port, until /ping answers; yields
    (base URL, the server process) and stops it (its process group: the CLI and uvicorn) after."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = tempfile.NamedTemporaryFile("w+", prefix="mlflow-serve-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "-h",
        HOST,
        "-p",
        str(port),
        "--env-manager",
        "local",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while not ping(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = log.read()[-2000:]
                raise PipelineError(f"mlflow models serve -m {model_uri} did not come up: {tail.splitlines()[-1:]}")
            time.sleep(0.5)
        yield url, psutil.Process(proc.pid)
    finally:
        stop_group(proc)
        log.close()
        os.unlink(log.name)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (started by `served`), SIGKILL it if still there after 30 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def percentile(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def load_test(
    url: str,
    server: psutil.Process,
    requests: int = 2000,
    concurrency: int = 8,
    max_seconds: float = 900,
    timeout_s: float = 60,
    seed: int = 0,
) -> dict:
    """Send `requests` one-text requests at `concurrency` to url/invocations, stopping early at
    `max_seconds`; returns the figures (latency in ms, throughput, errors, contract breaks, RSS)."""
    invocations = f"{url}/invocations"
    work = workload(requests, seed)
    for kind in MIX:  # warm-up, one of each kind, so lazy loading (jieba's dictionary) is not counted
        post(invocations, body([make_text(kind, random.Random(seed))]), timeout_s)
    rss_before = tree_rss_mib(server)
    peak = [rss_before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss_mib(server))

    deadline = time.monotonic() + max_seconds
    latencies: dict[str, list[float]] = {k: [] for k in MIX}
    errors: Counter = Counter()
    broken: Counter = Counter()

    def one(item: tuple[str, str]) -> None:
        kind, text = item
        if time.monotonic() > deadline:
            errors["not sent (deadline)"] += 1
            return
        t0 = time.perf_counter()
        try:
            code, payload = post(invocations, body([text]), timeout_s)
        except OSError as exc:
            errors[type(exc).__name__] += 1
            return
        latencies[kind].append(1000 * (time.perf_counter() - t0))
        if code != 200:
            errors[f"HTTP {code}"] += 1
            return
        answers = json.loads(payload)["predictions"]
        why = contract_error(kind, answers[0]) if len(answers) == 1 else f"{len(answers)} answers"
        if why:
            broken[f"{kind}: {why}"] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, work))
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    rss_after = tree_rss_mib(server)
    every = [ms for values in latencies.values() for ms in values]
    return {
        "requests": requests,
        "concurrency": concurrency,
        "answered": len(every),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "contract_breaks": sum(broken.values()),
        "contract_break_kinds": dict(broken),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(every) / wall, 1),
        "p50_ms": round(percentile(every, 50), 1) if every else None,
        "p99_ms": round(percentile(every, 99), 1) if every else None,
        "p50_ms_by_kind": {k: round(percentile(v, 50), 1) for k, v in latencies.items() if v},
        "rss_before_mib": round(rss_before, 1),
        "rss_after_mib": round(rss_after, 1),
        "rss_peak_mib": round(peak[0], 1),
    }


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
    from tasks.serving.model_uri import champion_uri, registered, tracking_uri  # noqa: PLC0415

    uri, store = model_uri or champion_uri("reviews"), tracking_uri()
    cmd = "python -m benchmarks.bench --only serving"
    if not registered(uri, store):
        note = f"skipped: {uri} is not in {store} (make reviews registers it)"
        return [Measure("serving_latency_p99", None, "ms", "p50", None, cmd, note=note)]
    f = run(uri, store)
    flat = f["rss_after_mib"] <= 1.2 * f["rss_before_mib"]
    refused = f["over_limit"]["status"] == 400
    note = (
        f"{f['requests']:,} one-text requests at concurrency {f['concurrency']} to `mlflow models serve -m {uri}` "
        f"on 127.0.0.1 (mixed: blank, punctuation, unknown words, short, 500-char and 50 KB texts): "
        f"{f['errors']} errors, {f['contract_breaks']} answers breaking the status contract, "
        f"{f['throughput_rps']} req/s; p50 by kind {f['p50_ms_by_kind']} ms; server RSS "
        f"{f['rss_before_mib']:.0f} → {f['rss_after_mib']:.0f} MiB (peak {f['rss_peak_mib']:.0f}); "
        f"a {f['over_limit']['body_mb']} MB body over the {MAX_REQUEST_CHARS:,}-character limit → HTTP "
        f"{f['over_limit']['status']}"
    )
    ok = f["errors"] == 0 and f["contract_breaks"] == 0
    return [
        Measure(
            "serving_latency_p99",
            f["p99_ms"],
            "ms",
            "p50",
            f["p50_ms"],
            cmd,
            target="0 errors, every answer keeps the status contract, over-limit body → 400",
            met=ok and refused,
            note=note,
        ),
        Measure("serving_throughput", f["throughput_rps"], "req/s", "–", None, cmd, target="", met=None),
        Measure(
            "serving_rss_after_load",
            f["rss_after_mib"],
            "MiB",
            "after warm-up",
            f["rss_before_mib"],
            cmd,
            target="≤ 1.2x after warm-up (memory flat)",
            met=flat,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model URI (default: the reviews champion of params.yaml)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=900, help="stop sending after this (default 900)")
    args = parser.parse_args()
    from tasks.serving.model_uri import champion_uri, registered, tracking_uri  # noqa: PLC0415

    uri, store = args.model or champion_uri("reviews"), tracking_uri()
    if not registered(uri, store):
        raise PipelineError(f"{uri} is not in {store}; train and register one with `make reviews`, or pass --model")
    figures = run(uri, store, requests=args.requests, concurrency=args.concurrency, max_seconds=args.max_seconds)
    print(json.dumps(figures, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    run_cli(main)
