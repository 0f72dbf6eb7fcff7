"""Model cards: what a registered version is, the data it was trained and tested on, its test scores
beside the baseline's, why the alias moved or not, and its known limits, as Markdown (the version's
MLflow description and `model_card.md`). Pure functions of dicts: each task states its parts
(`tasks/<task>/card.py` → `TaskCard`), the registry adds the decision and lineage (registry.py).

A metric row appears only for the keys metrics.json has: a missing key is left out, never shown as 0.
"""

import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

MISSING = "–"


@dataclass(frozen=True)
class TaskCard:
    """A task's parts of the card. `metrics`: rows (metric, model, baseline), already formatted;
    `sections`: (heading, Markdown) pairs the task adds (samples, a confusion matrix, ...)."""

    summary: str
    model: dict[str, str]
    data: dict[str, str]
    baseline: str
    metrics: list[tuple[str, str, str]]
    sections: list[tuple[str, str]] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """The registry's outcome for the version: whether `alias` points at it now, and why."""

    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    score_metric: str
    score: float
    champion_before: str | None = None  # the version the alias pointed at before, if any


def number(value) -> str:
    """A figure as the card prints it: ints with thousands separators, floats to 4 decimals below 10
    (scores, rates, bits) and 1 above (perplexities), anything missing as `–` (never 0)."""
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.4f}"


def percent(value) -> str:
    return MISSING if value is None else f"{100 * value:.1f} %"


def width(text: str) -> int:
    """Columns `text` takes in a monospace font: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A table as an aligned monospace block: MLflow's description view draws Markdown tables with
    no cell padding (adjacent figures run together), while a code block reads the same everywhere.
    The first column is left-aligned, the figures right-aligned."""
    cells = [[str(c).replace("\n", " ") for c in row] for row in [header, *rows]]
    widths = [max(width(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        first = row[0] + " " * (widths[0] - width(row[0]))
        rest = [" " * (w - width(c)) + c for c, w in zip(row[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "```text\n" + "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])]) + "\n```\n"


def metric_rows(metrics: dict, specs: list[tuple[str, str | None, str | None]], fmt=number) -> list:
    """Rows (label, model, baseline) for each (label, model_key, baseline_key) in `specs` that has
    at least one of its keys in `metrics`; a key the other side lacks shows as `–`."""
    rows = []
    for label, model_key, baseline_key in specs:
        model, baseline = (
            metrics.get(model_key) if model_key else None,
            metrics.get(baseline_key) if baseline_key else None,
        )
        if model is not None or baseline is not None:
            rows.append((label, fmt(model), fmt(baseline)))
    return rows


def split_sizes(splits: list[str]) -> dict[str, int]:
    """Rows per split (train, val, test order) from a split table's `split` column."""
    counts = Counter(splits)
    return {s: counts[s] for s in ("train", "val", "test") if s in counts}


def data_facts(corpus: str, unit: str, clean_report: dict, splits: dict[str, int], vocab_report: dict) -> dict:
    """The Data section's facts every task has: corpus, rows kept by cleaning, split sizes, vocabulary."""
    oov = vocab_report.get("oov_rate", {})
    facts = {
        "corpus": corpus,
        f"{unit} after cleaning": f"{number(clean_report.get('lines_out'))} of {number(clean_report.get('lines_in'))}",
        "split (train / val / test)": " / ".join(number(splits.get(s)) for s in ("train", "val", "test")),
        "vocabulary": f"{number(vocab_report.get('size'))} tokens from {number(vocab_report.get('train_tokens'))} "
        f"training tokens (coverage {percent(vocab_report.get('train_coverage'))})",
        "OOV rate (val / test)": f"{percent(oov.get('val'))} / {percent(oov.get('test'))}",
    }
    return facts


def describe(value) -> str:
    """A pretrained base as the checkpoint or metrics.json names it: `name` / `name vN` / as given."""
    if isinstance(value, dict):
        name = value.get("name") or value.get("model_name") or value.get("uri") or "?"
        version = value.get("version")
        return f"{name} v{version}" if version is not None else str(name)
    return str(value)


def tokenization(tokenizer: dict) -> str:
    """`word (jieba, HMM)`, `char`, ... from the checkpoint's tokenizer settings."""
    if tokenizer.get("level") == "char":
        return "characters"
    extras = [tokenizer.get("backend", "jieba")] + ["HMM"] * bool(tokenizer.get("hmm"))
    extras += ["user dictionary"] * bool(tokenizer.get("user_dict"))
    return f"words ({', '.join(extras)})"


def parameter_count(state_dict: dict) -> int:
    """Trainable numbers in a state dict; a tied matrix (embedding = decoder) counted once."""
    return sum({t.data_ptr(): t.numel() for t in state_dict.values()}.values())


def checkpoint_facts(ckpt: dict, monitor: str, lower_is_better: bool, pretrained_base=None) -> dict[str, str]:
    """The Model facts a self-describing checkpoint gives: size, tokenization, how training ended,
    and the pretrained base it was fine-tuned from (when the checkpoint or metrics name one)."""
    history = ckpt.get("history") or []
    facts = {
        "parameters": number(parameter_count(ckpt["state_dict"])),
        "tokenization": tokenization(ckpt.get("tokenizer", {})),
        "vocabulary size": number(len(ckpt.get("itos", []))),
    }
    scored = [row for row in history if row.get(monitor) is not None]
    if scored:
        best = (min if lower_is_better else max)(scored, key=lambda row: row[monitor])
        facts["training"] = (
            f"{len(history)} epochs, ended by {ckpt.get('stopped_by') or 'unknown'}; weights of epoch "
            f"{best['epoch']} (best `{monitor}` {number(best[monitor])})"
        )
    base = ckpt.get("pretrained_base") or pretrained_base
    facts["pretrained base"] = describe(base) if base else "none (trained from scratch)"
    return facts


def bullets(facts: dict[str, str]) -> str:
    return "".join(f"- **{key}**: {value}\n" for key, value in facts.items() if value is not None)


def decision_text(d: Decision) -> str:
    """Why alias `champion` moved to this version, or did not."""
    if d.promoted:
        before = f" (from v{d.champion_before})" if d.champion_before and d.champion_before != d.version else ""
        head = f"**`{d.alias}` points at v{d.version}**{before}"
    else:
        head = f"**`{d.alias}` unchanged**" + (f" (still v{d.champion_before})" if d.champion_before else "")
    return f"{head}: {d.reason}. Gate: `{d.score_metric}` = {number(d.score)} on the test split.\n"


LINEAGE = {
    "git_commit": "git commit",
    "params_hash": "params hash",
    "eval_set_hash": "test split hash (`eval_set_hash`)",
    "model_md5": "model file md5",
}


def lineage_facts(tags: dict[str, str], run_id: str) -> dict[str, str]:
    """Code, data and run identifiers from the version's tags: DVC-comparable md5s of each dataset."""
    facts = {"MLflow run": f"`{run_id}`"}
    facts.update({label: f"`{tags[key]}`" for key, label in LINEAGE.items() if key in tags})
    data = [f"{key[5:].removesuffix('_md5')} `{v}`" for key, v in tags.items() if key.startswith("data.")]
    if data:
        facts["data md5 (as in dvc.lock)"] = ", ".join(data)
    if "prefect.flow_run_url" in tags:
        facts["Prefect flow run"] = f"[{tags.get('prefect.flow_run_name', 'flow run')}]({tags['prefect.flow_run_url']})"
    elif "prefect.flow_run_id" in tags:
        facts["Prefect flow run"] = f"`{tags.get('prefect.flow_run_name', '')}` (`{tags['prefect.flow_run_id']}`)"
    return facts


def render(card: TaskCard, decision: Decision, tags: dict[str, str], run_id: str) -> str:
    """The model card of a registered version, as Markdown."""
    parts = [
        f"# {decision.model_name} v{decision.version}\n\n{card.summary}\n",
        f"## Registry\n\n{decision_text(decision)}",
        f"## Model\n\n{bullets(card.model)}",
        f"## Data\n\n{bullets(card.data)}",
        f"## Test metrics\n\nThe model beside its baseline, {card.baseline}, on the same test split.\n\n"
        + table(["metric", "model", "baseline"], [list(r) for r in card.metrics]),
        *(f"## {heading}\n\n{body}" for heading, body in card.sections),
        "## Known limits\n\n" + "".join(f"- {limit}\n" for limit in card.limits),
        f"## Lineage\n\n{bullets(lineage_facts(tags, run_id))}",
    ]
    return "\n".join(part.rstrip("\n") + "\n" for part in parts)
