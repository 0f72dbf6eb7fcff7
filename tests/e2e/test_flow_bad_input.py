"""Bad input through the flows: one line and no traceback, before Prefect starts on the command
line, and as the failed flow run's state message when the flow itself meets it (a served
deployment's run starts with the pre-flight task)."""

import logging
import subprocess
import sys

import pytest

from flows import WithoutTracebackForBadInput
from tasks.common.errors import PipelineError
from tests.helpers import assert_one_line_error, build_tiny_project


def record_with(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())


def test_expected_errors_lose_the_traceback_unexpected_ones_keep_it():
    bad_input, bug = record_with(PipelineError("x.txt: empty; fix it")), record_with(ValueError("bug"))
    assert WithoutTracebackForBadInput().filter(bad_input) and WithoutTracebackForBadInput().filter(bug)
    assert bad_input.exc_info is None
    assert bug.exc_info is not None and bug.exc_info[0] is ValueError


def test_prefect_engine_loggers_have_the_filter():
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        assert any(isinstance(f, WithoutTracebackForBadInput) for f in logging.getLogger(name).filters)


@pytest.mark.parametrize("flow, task", [("flows.train_lyrics", "lyrics"), ("flows.train_reviews", "reviews")])
def test_flow_command_line_fails_before_prefect_with_one_line(tmp_path, flow, task):
    env = build_tiny_project(tmp_path, tasks=(task,))
    bad = tmp_path / "bad.txt"
    bad.write_text("！！！\n。。。\n~~~\n", encoding="utf-8")
    key = "lyrics.corpus" if task == "lyrics" else "reviews.input.path"
    proc = subprocess.run([sys.executable, "-m", flow, "--set", f"{key}={bad}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert_one_line_error(proc, str(bad))
    assert "Starting temporary server" not in proc.stdout + proc.stderr  # failed before Prefect started


@pytest.mark.slow
def test_flow_run_fails_with_the_one_line_as_its_state_message(tmp_path):
    env = build_tiny_project(tmp_path)
    bad = tmp_path / "empty.txt"
    bad.write_text("\n", encoding="utf-8")
    script = (
        "from flows.train_lyrics import train_lyrics\n"
        f"state = train_lyrics(overrides={{'lyrics.corpus': {str(bad)!r}}}, return_state=True)\n"
        "print('STATE', state.type.value, state.message)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"STATE FAILED {bad}: file is empty" in out
    assert "Traceback" not in out
    assert "Task run 'preflight" in out  # the check ran as the flow's first task
