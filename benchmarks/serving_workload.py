"""The requests of the serving load test: a mix of review texts (blank, punctuation-only, unknown
words, short and medium reviews, 50 KB texts), how each is posted, and what its answer must say
(the status contract of tasks/serving/reviews_pyfunc.py)."""

import json
import random
import statistics
import urllib.error
import urllib.request

from tasks.serving.reviews_pyfunc import COLUMNS

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


def percentile(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
