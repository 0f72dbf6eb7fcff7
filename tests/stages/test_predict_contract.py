"""What predict and the served review model answer when they cannot judge: the status contract
(ok / empty / unknown, known_share, truncated) of the predictor, `tasks.predict` (text and jsonl),
the pyfunc and its registered signature, the pyfunc's request bounds, and a model trained with the
rjieba backend served with rjieba (no train/serve skew)."""

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from tasks.serving.review_predictor import ReviewModel
from tasks.serving.reviews_pyfunc import COLUMNS, MAX_REQUEST_CHARS, MAX_REQUEST_ROWS, ReviewClassifier
from tasks.text.review_rules import clean_review
from tasks.text.segment import segment
from tests.helpers import (
    make_reviews,
    predict_main,
    run_reviews_stages,
    tiny_reviews_params_dict,
    write_params,
    write_reviews_csv,
)

SKEW_TEXT = "孩子4-5岁"  # jieba: 孩子 4 - 5 岁; rjieba: 孩子 4-5 岁
GOOD = "房间很好，服务满意"
EMPTY = ["", "   ", "\t", "\u3000", "<br/>", "http://example.com/a"]  # nothing left after cleaning
UNKNOWN = ["zzqx wkpj", "hello world", "！！！", "😀"]  # no word the vocabulary knows (known "!" is no word)
UNIT = "房间很好，"  # 房间 很 好 , : all known


def window_text(reviews: ReviewModel, extra: int = 0) -> str:
    """UNIT repeated to exactly max_len tokens, then `extra` more units."""
    per_unit = len(reviews.tokens(UNIT))
    assert reviews.model.max_len % per_unit == 0
    return UNIT * (reviews.model.max_len // per_unit + extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The reviews stages, tokenized with rjieba, through register, in a temp dir: (params, model.pt)."""
    import random

    from tasks.common.params import load_params

    tmp = tmp_path_factory.mktemp("contract")
    corpus = write_reviews_csv(tmp / "raw/reviews.csv", make_reviews(random.Random(0), 160))
    raw = tiny_reviews_params_dict(tmp, corpus)
    raw["reviews"]["tokenize"]["backend"] = "rjieba"
    params_file = write_params(tmp / "params.yaml", raw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.chdir(tmp)  # MLflow's ./mlruns artifacts stay in tmp
        params = load_params(params_file)
        run_reviews_stages(params)
        yield params, Path(params.reviews.train.output_dir) / "model.pt"


@pytest.fixture(scope="module")
def reviews(trained):
    return ReviewModel(trained[1])


def test_every_status(reviews):
    long_text = window_text(reviews, extra=50)
    rows = reviews.predictions([GOOD, *EMPTY, *UNKNOWN, long_text])
    good, empty, unknown, long = rows[0], rows[1 : 1 + len(EMPTY)], rows[1 + len(EMPTY) : -1], rows[-1]
    assert good.status == "ok" and good.label in reviews.classes and 0.5 <= good.probability <= 1
    assert good.known_share == 1.0 and good.truncated is False
    for row in empty:
        assert (row.status, row.label, row.probability, row.known_share, row.truncated) == (
            "empty",
            None,
            None,
            None,
            False,
        )
    for text, row in zip(UNKNOWN, unknown):
        assert (row.status, row.label, row.probability, row.truncated) == ("unknown", None, None, False), text
        assert row.known_share == (1.0 if text == "！！！" else 0.0), text  # cleaned to "!", which is known
    assert long.status == "ok" and long.truncated is True and long.label is not None and long.known_share == 1.0
    # the label is that of the window the model reads, not of an answer to the whole text
    assert long.probability == pytest.approx(reviews.predictions([window_text(reviews)])[0].probability)
    # predict() keeps its (labels, probabilities) shape, None where there is no label
    labels, probs = reviews.predict([GOOD, "", "zzqx"])
    assert labels[1:] == [None, None] and probs[1:] == [None, None] and labels[0] in reviews.classes


def test_known_share_is_of_the_tokens_read(reviews):
    assert reviews.tokens("房间很好 zzqx") == ["房间", "很", "好", "zzqx"]
    row = reviews.predictions(["房间很好 zzqx"])[0]  # 3 of 4 known
    assert row.status == "ok" and row.known_share == pytest.approx(3 / 4)
    window = window_text(reviews)  # exactly max_len tokens: not truncated
    assert len(reviews.tokens(window)) == reviews.model.max_len
    assert reviews.predictions([window])[0].truncated is False
    row = reviews.predictions([window + "zzqx " * 50])[0]  # only unknown words past the window
    assert row.truncated is True and row.known_share == 1.0


def test_a_long_text_is_segmented_from_a_prefix_that_fills_the_window(reviews, monkeypatch):
    from tasks.serving import review_predictor

    long_text = window_text(reviews, extra=20_000)  # ~100 KB
    full = reviews.tokens(long_text)
    seen = []
    tokens = reviews.tokens
    monkeypatch.setattr(reviews, "tokens", lambda text: seen.append(len(text)) or tokens(text))
    assert reviews.window(long_text) == (full[: reviews.model.max_len], True)
    assert seen == [review_predictor.PREFIX_CHARS_PER_TOKEN * reviews.model.max_len]  # only the prefix was cut
    # a prefix too sparse to fill the window (one long Latin token): the whole text decides
    sparse = "z" * (review_predictor.PREFIX_CHARS_PER_TOKEN * reviews.model.max_len * 3)
    assert reviews.window(sparse) == ([sparse], False)


def test_served_with_the_training_backend(trained, reviews):
    """The checkpoint says rjieba; serving segments with rjieba, not jieba's different cut."""
    assert torch.load(trained[1], weights_only=True)["tokenizer"]["backend"] == "rjieba"
    cleaned = clean_review(SKEW_TEXT, reviews.rules)
    assert segment(cleaned, backend="rjieba") != segment(cleaned, backend="jieba")  # the text tells them apart
    assert reviews.tokens(SKEW_TEXT) == segment(cleaned, backend="rjieba") == ["孩子", "4-5", "岁"]


def test_an_old_checkpoint_without_backend_serves_with_jieba(trained, tmp_path):
    ckpt = torch.load(trained[1], weights_only=True)
    del ckpt["tokenizer"]["backend"]
    torch.save(ckpt, tmp_path / "old.pt")
    assert ReviewModel(tmp_path / "old.pt").tokens(SKEW_TEXT) == ["孩子", "4", "-", "5", "岁"]


# --- tasks.predict ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["model.pt", "registry"])
def test_predict_jsonl_and_text_say_when_they_cannot_judge(trained, monkeypatch, capsys, source):
    params, model_pt = trained
    if source == "registry":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", params.tracking.uri)
        model = "models:/review-sentiment@champion"
    else:
        model = str(model_pt)
    long_text = UNIT * params.reviews.model.max_len
    lines = [GOOD, "", "   ", "zzqx wkpj", long_text]
    code, out, err = predict_main(monkeypatch, capsys, ["-", "--format", "jsonl", "--model", model], "\n".join(lines))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == lines
    assert all(list(r) == ["text", "label", "probability", "status", "known_share", "truncated"] for r in rows)
    assert [r["status"] for r in rows] == ["ok", "empty", "empty", "unknown", "ok"]
    assert [r["truncated"] for r in rows] == [False, False, False, False, True]
    assert rows[0]["label"] in (0, 1) and 0.5 <= rows[0]["probability"] <= 1 and rows[0]["known_share"] == 1.0
    for r in rows[1:4]:
        assert r["label"] is None and r["probability"] is None
    assert rows[1]["known_share"] is None and rows[3]["known_share"] == 0.0

    code, out, _ = predict_main(monkeypatch, capsys, ["--model", model, "--", *lines])
    assert code == 0
    text_rows = out.split("\n")[:-1]
    assert len(text_rows) == len(lines)
    label, prob, text = text_rows[0].split("\t")
    assert label in {"0", "1"} and 0.5 <= float(prob) <= 1 and text == GOOD
    assert text_rows[1] == "[empty]\t-\t" and text_rows[2] == "[empty]\t-\t   "
    assert text_rows[3] == "[unknown]\t-\tzzqx wkpj"
    label, prob, text = text_rows[4].split("\t")
    assert label in {"0", "1"} and text == "[truncated] " + long_text


def test_predict_cuts_batches_to_the_served_bounds():
    from tasks.predict import within

    assert list(within(["a" * 5, "b" * 5, "c" * 20], max_rows=2, max_chars=12)) == [
        ["a" * 5, "b" * 5],
        ["c" * 12],
    ]
    assert list(within(["x"] * 5, max_rows=2, max_chars=100)) == [["x", "x"], ["x", "x"], ["x"]]


# --- the pyfunc -------------------------------------------------------------------------------


class Context:
    def __init__(self, checkpoint: Path):
        self.artifacts = {"checkpoint": str(checkpoint)}


@pytest.fixture(scope="module")
def pyfunc(trained):
    served = ReviewClassifier()
    served.load_context(Context(trained[1]))
    return served


def test_pyfunc_columns_and_json(pyfunc, trained):
    from mlflow.pyfunc.scoring_server import predictions_to_json

    texts = pd.DataFrame({"text": [GOOD, "", None, "zzqx", UNIT * 100]})
    out = pyfunc.predict(None, texts)
    assert list(out.columns) == COLUMNS and len(out) == 5
    assert out["status"].tolist() == ["ok", "empty", "empty", "unknown", "ok"]
    assert out["truncated"].tolist() == [False, False, False, False, True]
    buffer = io.StringIO()
    predictions_to_json(out, buffer)  # what the scoring server sends back
    answers = json.loads(buffer.getvalue())["predictions"]
    assert "NaN" not in buffer.getvalue()
    assert answers[1] == {
        "label": None,
        "probability": None,
        "status": "empty",
        "known_share": None,
        "truncated": False,
    }
    assert answers[3]["label"] is None and answers[3]["known_share"] == 0.0
    assert isinstance(answers[0]["label"], int) and answers[0]["label"] in (0, 1)


def test_pyfunc_refuses_requests_over_its_bounds(pyfunc):
    from mlflow.exceptions import MlflowException

    assert pyfunc.predict(None, pd.DataFrame({"text": ["好" * MAX_REQUEST_CHARS]}))["truncated"].tolist() == [True]
    for texts in (["好" * MAX_REQUEST_CHARS, "好"], [""] * (MAX_REQUEST_ROWS + 1)):
        with pytest.raises(MlflowException) as info:
            pyfunc.predict(None, pd.DataFrame({"text": texts}))
        assert info.value.get_http_status_code() == 400
        assert "request too large" in info.value.message and "split it" in info.value.message


def test_registered_signature_declares_the_contract(trained):
    import mlflow

    model = mlflow.pyfunc.load_model("models:/review-sentiment@champion")
    outputs = {c.name: c for c in model.metadata.get_output_schema().inputs}
    assert list(outputs) == COLUMNS
    assert not outputs["label"].required and not outputs["probability"].required
    assert outputs["status"].required and outputs["truncated"].required
    out = model.predict(pd.DataFrame({"text": [GOOD, "", "zzqx"]}))
    assert out["status"].tolist() == ["ok", "empty", "unknown"]


def test_class_names_stay_strings_and_missing_labels_stay_null():
    from mlflow.pyfunc.scoring_server import predictions_to_json

    from tasks.serving.review_predictor import Prediction
    from tasks.serving.reviews_pyfunc import predictions_frame

    rows = [Prediction("pos", 0.9, "ok", 1.0, False), Prediction(None, None, "unknown", 0.0, False)]
    buffer = io.StringIO()
    predictions_to_json(predictions_frame(rows, ["neg", "pos"]), buffer)
    answers = json.loads(buffer.getvalue())["predictions"]
    assert [a["label"] for a in answers] == ["pos", None] and "NaN" not in buffer.getvalue()
