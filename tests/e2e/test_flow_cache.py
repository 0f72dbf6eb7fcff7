"""Cached reruns of the Prefect flows: a stage is skipped only when its inputs, params and code are
unchanged and its outputs are still the files it wrote; what a stage reads and writes comes from
dvc.yaml (tasks/fingerprint.py)."""

import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows import fingerprint as fp
from tasks.common.params import load_params
from tests.helpers import ROOT, build_tiny_project, copy_project, sh, tiny_params_dict, write_params, write_tiny_corpus

LYRICS = ["pretrain", "clean", "tokenize", "split", "vocab", "train", "evaluate", "register"]


# --- fingerprints ---------------------------------------------------------------------------------


def test_stage_spec_reads_dvc_yaml_with_the_params_in_use(tmp_path, monkeypatch):
    copy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = load_params("params.yaml", {"lyrics.vocab.output": "elsewhere/vocab.json", "lyrics.vocab.min_freq": 3})
    spec = fp.stage_spec(params, "lyrics-vocab")
    assert spec.module == "tasks.vocab"
    assert spec.deps == (
        "data/split/lyrics.parquet",
        "models/pretrain/model.pt",  # ${lyrics.base_model}: the vocabulary extends the base's
        "tasks/text/vocab.py",
        "tasks/training/base_model.py",
        "tasks/vocab.py",
    )
    assert spec.outs == ("elsewhere/vocab.json",)  # ${lyrics.vocab.output} follows the override
    assert spec.params["lyrics.vocab"]["min_freq"] == 3
    assert set(spec.params) == {"lyrics.base_model", "lyrics.tokenize.level", "lyrics.vocab"}
    evaluate = fp.stage_spec(params, "lyrics-evaluate")  # metrics and `${...}/file` outs count too
    assert {"reports/lyrics/metrics.json", "reports/lyrics/samples.md"} <= set(evaluate.outs)


def test_train_fingerprint_covers_the_tracking_store(tmp_path, monkeypatch):
    copy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = load_params("params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///a.db")
    before = fp.fingerprint(fp.stage_spec(params, "lyrics-train"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # a run in another store is not this one
    assert fp.fingerprint(fp.stage_spec(params, "lyrics-train")) != before


def test_code_of_imported_task_modules_counts(tmp_path, monkeypatch):
    code = tmp_path / "tasks"
    shutil.copytree(ROOT / "tasks", code, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fp, "TASKS_DIR", code)
    files = {p.name for p in fp.module_files("tasks.vocab")}
    assert {"vocab.py", "atomic.py", "params.py", "errors.py"} <= files and "train.py" not in files
    spec = fp.StageSpec("lyrics-vocab", "tasks.vocab", (), {}, ())
    before = fp.fingerprint(spec)
    atomic = code / "common" / "atomic.py"  # imported by vocab
    atomic.write_text(atomic.read_text() + "\n# changed\n")
    assert fp.fingerprint(spec) != before


def test_folder_hash_sees_every_file(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"1")
    first = fp.path_hash(folder)
    (folder / "extra.json").write_text("{}")
    assert fp.path_hash(folder) != first
    assert fp.path_hash(tmp_path / "missing") is None


# --- the cache policy, without a Prefect server --------------------------------------------------


def test_cache_key_is_reused_only_while_inputs_and_outputs_hold(tmp_path, monkeypatch):
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore
    from prefect.transactions import transaction

    from flows import stages
    from tasks import clean, split, tokenize

    copy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stages, "records_dir", lambda: tmp_path / "records")
    params_file = write_params(tmp_path / "tiny.yaml", tiny_params_dict(tmp_path, write_tiny_corpus(tmp_path / "raw")))
    params = load_params(params_file)
    for stage in (clean, tokenize, split):
        stage.run(params)
    vocab = stages.vocab_task.fn  # what Prefect runs for the task
    ctx = SimpleNamespace(task=SimpleNamespace(name="vocab"))

    def key(refresh=False, p=params):
        return stages.StageCache().compute_key(ctx, {"params": p}, {"refresh": refresh})

    store = ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path / "results")))

    def run_under(k, p=params):
        with transaction(key=k, store=store):  # what Prefect's engine does around a task run
            vocab(p)

    first = key()
    run_under(first)
    assert key() == first  # nothing changed: a hit
    assert stages.is_fresh(params, "lyrics-vocab")
    refreshed = key(refresh=True)  # flow parameter refresh=True: a fresh key
    assert refreshed != first
    run_under(refreshed)
    assert key() == refreshed
    out = Path(params.lyrics.vocab.output)
    out.unlink()  # a deleted output
    assert not stages.is_fresh(params, "lyrics-vocab")
    deleted = key()
    assert deleted != refreshed
    run_under(deleted)
    assert key() == deleted
    out.write_text(out.read_text().replace("<unk>", "<UNK>"))  # an edited output
    edited = key()
    assert edited != deleted
    run_under(edited)
    other = load_params(params_file, {"lyrics.vocab.min_freq": 1})  # a changed param of this stage
    assert key(p=other) != edited
    unrelated = load_params(params_file, {"lyrics.train.lr": 0.5})  # another stage's param
    run_under(key(p=unrelated), p=unrelated)
    assert key(p=unrelated) == key()


# --- the flow, end to end ---------------------------------------------------------------------------


def flow_outcomes(proc) -> dict[str, str]:
    """Stage → "ran" / "cached" from the flow's summary line, checked against Prefect's own
    task-run states in the log (`Finished in state Cached(...)` / `Completed(...)`)."""
    line = next(out for out in proc.stdout.splitlines() if out.startswith("stages "))
    summary = {}
    for part in re.sub(r" \(.*\)$", "", line[len("stages ") :]).split("; "):
        outcome, names = part.split(": ")
        summary.update({name: outcome for name in names.split(", ")})
    states = dict(re.findall(r"Task run '(\w+)-\w+' - Finished in state (\w+)\(", proc.stdout + proc.stderr))
    assert {s: ("cached" if st == "Cached" else "ran") for s, st in states.items()} == summary, (states, summary)
    return summary


def ran(proc) -> set[str]:
    return {s for s, o in flow_outcomes(proc).items() if o == "ran"}


@pytest.mark.slow
def test_flow_reruns_only_what_changed(tmp_path):
    import mlflow

    root = tmp_path
    env = build_tiny_project(root)
    flow = [sys.executable, "-m", "flows.train_lyrics"]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])

    def runs_and_versions() -> tuple[int, int]:
        runs = client.search_runs([client.get_experiment_by_name("lyrics-lm").experiment_id])
        return len(runs), len(client.search_model_versions("name='lyrics-lm'"))

    assert ran(sh(flow, root, env)) == set(LYRICS)
    assert runs_and_versions() == (1, 1)
    registered = (root / "reports/lyrics/registered.json").read_text()

    second = sh(flow, root, env)
    assert ran(second) == set()  # every stage cached
    assert "no new model version" in second.stdout
    assert runs_and_versions() == (1, 1)  # no empty MLflow run, no new version
    assert (root / "reports/lyrics/registered.json").read_text() == registered

    # A changed evaluate param, and a deleted vocab output, in one run: evaluate reruns and so does
    # register (it reads evaluate's metrics); vocab reruns and writes the same bytes, so train (which
    # hashes it) stays cached, as with `dvc repro`.
    vocab = root / "data/vocab/lyrics.json"
    before = vocab.read_bytes()
    vocab.unlink()
    assert ran(sh([*flow, "--set", "lyrics.evaluate.ngram_order=2"], root, env)) == {"vocab", "evaluate", "register"}
    assert vocab.read_bytes() == before
    # evaluate logs into the same run; register reuses the version of that same training run and model
    # (tasks/common/registry.py: a rerun or retry never duplicates a version), its score tags updated
    assert runs_and_versions() == (1, 1)
