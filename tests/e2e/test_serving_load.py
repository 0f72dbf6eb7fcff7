"""The served review model under a short load: a tiny model trained and registered by the real
stages, `mlflow models serve` on 127.0.0.1 (benchmarks/serving.py, the `make bench` measure), 60
mixed requests at concurrency 4 with no error and every answer keeping the status contract, memory
flat, and a body just over the pyfunc's request limit refused with a clear 400."""

import json

import pytest

from benchmarks import serving
from benchmarks.scoring_server import ping, served
from benchmarks.serving_workload import body, post
from tasks.serving.reviews_pyfunc import COLUMNS, MAX_REQUEST_CHARS
from tests.helpers import run_reviews_stages

pytestmark = pytest.mark.slow


def test_served_model_under_load(reviews_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's ./mlruns artifacts stay in tmp
    run_reviews_stages(reviews_params)
    store = reviews_params.tracking.uri
    with served("models:/review-sentiment@champion", store) as (url, server):
        assert url.startswith("http://127.0.0.1:")
        figures = serving.load_test(url, server, requests=60, concurrency=4, max_seconds=300)
        assert figures["answered"] == 60 and figures["errors"] == 0, figures
        assert figures["contract_breaks"] == 0, figures["contract_break_kinds"]
        assert {"empty", "blank", "unknown_words", "long_50kb", "short"} <= set(figures["p50_ms_by_kind"])
        assert figures["rss_after_mib"] <= 1.2 * figures["rss_before_mib"], figures

        # One request with each case, answered in order with the documented columns.
        texts = ["房间很好，服务满意", "", "   ", "zzqx wkpj", "房间很好，" * 20_000]
        code, payload = post(f"{url}/invocations", body(texts), timeout=60)
        assert code == 200
        answers = json.loads(payload)["predictions"]
        assert [list(a) for a in answers] == [COLUMNS] * len(texts)
        assert [a["status"] for a in answers] == ["ok", "empty", "empty", "unknown", "ok"]
        assert [a["truncated"] for a in answers] == [False, False, False, False, True]
        assert answers[1]["label"] is None and answers[3]["probability"] is None
        assert answers[0]["label"] in (0, 1) and answers[4]["label"] in (0, 1)

        refused = serving.over_limit(url, server)  # MAX_REQUEST_CHARS + 1 characters, ~3 MB of JSON
        assert refused["status"] == 400, refused
        assert refused["message"].startswith("request too large") and f"{MAX_REQUEST_CHARS:,}" in refused["message"]
        code, _ = post(f"{url}/invocations", body(["好" * MAX_REQUEST_CHARS]), timeout=120)
        assert code == 200  # at the limit: answered
        assert ping(url)  # still serving after both
