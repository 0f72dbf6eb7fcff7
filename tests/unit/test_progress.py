"""The progress display: the log fallback's cadence, the bar and off modes, the mode switch, and
that training gives the same results whether progress is shown or not."""

import logging

import pyarrow as pa
import pytest
import torch
from tqdm import tqdm

from tasks.common import progress
from tasks.common.progress import EpochProgress, Tracker, progress_mode
from tasks.lyrics.model import RNNLanguageModel
from tasks.lyrics.train import train_language_model
from tasks.text.tokenize_stream import write_batches
from tests.helpers import TRAIN_PATTERN, V, pattern_stream, train_cfg

log = logging.getLogger("tasks.test_progress")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_log_mode_writes_a_line_every_tenth(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger=log.name)
    with Tracker(100, "work", "rows", log, mode="log", clock=clock) as done:
        for _ in range(100):
            clock.now += 1.0
            done.update()
    got = lines(caplog)
    assert len(got) == 10  # at 10 %, 20 %, ... 100 %; the end adds none, 100 % was just written
    assert got[0].startswith("work: 10/100 rows (10%)")
    assert got[-1].startswith("work: 100/100 rows (100%)")


def test_log_mode_writes_every_30_seconds_and_at_the_end(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger=log.name)
    with Tracker(500, "work", "rows", log, mode="log", clock=clock) as done:
        for _ in range(5):
            clock.now += 20.0  # 5 rows in 100 s: never 10 %, but 30 s pass
            done.update(note=lambda: "note")
    got = lines(caplog)
    assert [line.split(" rows")[0] for line in got] == ["work: 2/500", "work: 4/500", "work: 5/500"]
    assert got[0].endswith("; note") and "ETA" in got[0]


def test_log_mode_without_a_total_and_on_error(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger=log.name)
    with Tracker(None, "work", "rows", log, mode="log", clock=clock) as done:
        done.update(7)
        clock.now += 7.0
    assert lines(caplog) == ["work: 7 rows, 1 rows/s, 00:07 elapsed"]
    caplog.clear()
    with pytest.raises(RuntimeError), Tracker(100, "work", "rows", log, mode="log", clock=clock) as done:
        clock.now += progress.LOG_QUIET_S + 1  # past the quiet start, short of 10 % and of 30 s
        done.update(1)
        raise RuntimeError("stop")
    assert lines(caplog) == []  # no "done" line for work that failed


def test_log_mode_is_silent_for_work_of_a_few_seconds(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger=log.name)
    with Tracker(10, "work", "rows", log, mode="log", clock=clock) as done:
        for _ in range(10):
            clock.now += progress.LOG_QUIET_S / 20
            done.update()
    assert lines(caplog) == []  # the stage's own summary line is enough


def test_log_mode_starts_at_the_first_mark_after_the_quiet_start(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger=log.name)
    with Tracker(100, "work", "rows", log, mode="log", clock=clock) as done:
        for _ in range(100):
            clock.now += 0.125  # 40 rows in the 5 s quiet start: the 10 %, 20 %, 30 % marks pass unwritten
            done.update()
    assert [line.split(" rows")[0] for line in lines(caplog)] == [f"work: {n}/100" for n in range(40, 101, 10)]


def test_bar_mode_uses_tqdm_and_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger=log.name)
    tracker = Tracker(3, "work", "rows", log, mode="bar")
    assert isinstance(tracker.bar, tqdm)
    tracker.update(2, note=lambda: "note")
    assert tracker.bar.n == 2 and tracker.bar.postfix == "note"
    tracker.close()
    assert tracker.bar is None and lines(caplog) == []


def test_off_mode_emits_nothing(caplog, capsys):
    caplog.set_level(logging.INFO, logger=log.name)
    with Tracker(3, "work", "rows", log, mode="off") as done:
        done.update(3)
    assert done.bar is None and lines(caplog) == []
    assert capsys.readouterr().err == ""
    assert EpochProgress(3, 10, "tokens", log, enabled=False, mode="bar").mode == "off"  # ranks other than 0


def test_the_mode_comes_from_the_environment_or_the_terminal(monkeypatch):
    for mode in ("bar", "log", "off"):
        monkeypatch.setenv(progress.MODE_ENV, mode.upper())
        assert progress_mode() == mode
    monkeypatch.setenv(progress.MODE_ENV, "auto")
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    assert progress_mode() == "bar"
    monkeypatch.delenv(progress.MODE_ENV)
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: False)
    assert progress_mode() == "log"


def test_epoch_note_has_rate_running_loss_and_run_eta():
    clock = FakeClock()
    watch = EpochProgress(epochs=3, steps=10, item="tokens", logger=log, mode="off", clock=clock)
    watch.start(1)
    for loss in (4.0, 2.0, 3.0, 3.0, 3.0):
        clock.now += 1.0
        watch.step(100, loss)
    # 5 of 10 batches in 5 s: 5 s left of this epoch, then 2 epochs of 10 s each
    assert watch.note() == "100 tokens/s, loss 3.000, run ETA ≤00:25"
    watch.end()
    clock.now += 10.0  # the rest of epoch 1 and its validation: 15 s in all
    watch.start(2)
    clock.now += 1.0
    watch.step(100, 1.0)
    # 9 batches at 1 s, then epoch 3 as long as epoch 1 was
    assert watch.note() == "100 tokens/s, loss 1.000, run ETA ≤00:24"


def test_tokenize_writer_reports_rows(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(progress, "LOG_QUIET_S", 0.0)
    monkeypatch.setenv(progress.MODE_ENV, "log")
    caplog.set_level(logging.INFO, logger="tasks.text.tokenize_stream")
    schema = pa.schema([("tokens", pa.list_(pa.string()))])
    batches = [pa.record_batch([pa.array([["a", "b"]] * 5)], schema=schema) for _ in range(4)]
    counts = write_batches(batches, schema, str(tmp_path / "out.parquet"), total_rows=20)
    assert counts == {"rows": 20, "tokens": 40}
    got = [r.getMessage() for r in caplog.records if r.name == "tasks.text.tokenize_stream"]
    assert got[-1].startswith("tokenize: 20/20 rows (100%)")


def train_once(tmp_path, monkeypatch, mode: str) -> tuple[list[dict], dict]:
    monkeypatch.setenv(progress.MODE_ENV, mode)
    torch.manual_seed(0)
    model = RNNLanguageModel(V, 16, 16, 1, cell="lstm", dropout=0.3, tie_weights=True)  # dropout: RNG in play
    train, val = pattern_stream(TRAIN_PATTERN, 30, 4), pattern_stream(TRAIN_PATTERN, 6, 2)
    history = train_language_model(model, train, val, train_cfg(tmp_path / mode, epochs=3), torch.device("cpu"))
    timing = {"seconds", "tokens_per_s"}
    return [{k: v for k, v in row.items() if k not in timing} for row in history], model.state_dict()


def test_training_is_the_same_with_progress_on_or_off(tmp_path, monkeypatch):
    off_history, off_state = train_once(tmp_path, monkeypatch, "off")
    for mode in ("log", "bar"):
        history, state = train_once(tmp_path, monkeypatch, mode)
        assert history == off_history
        assert all(torch.equal(state[k], off_state[k]) for k in off_state)
