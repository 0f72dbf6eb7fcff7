"""One benchmark measure and the two files a run writes: benchmarks/results.json and BENCHMARKS.md."""

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from tasks.common.atomic import write_text


@dataclass
class Measure:
    """`value` measured side by side with `reference_value` in the same run; `ratio` = value /
    reference_value. `target` states what the figure should reach (prose), `met` whether it did."""

    name: str
    value: float | None
    unit: str
    reference: str
    reference_value: float | None
    command: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    ratio: float | None = field(default=None)
    machine: str = ""
    date: str = ""

    def __post_init__(self):
        if self.ratio is None and self.value is not None and self.reference_value:
            self.ratio = self.value / self.reference_value


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    gpu = f"; GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "; no GPU"
    return (
        f"{platform.node()}: {cpu}, {len(os.sched_getaffinity(0))} usable cores, "
        f"load {load} at start{gpu}; torch {torch.__version__}, Python {platform.python_version()}"
    )


def stamp(measures: list[Measure], host: str) -> list[Measure]:
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for m in measures:
        m.machine, m.date = host, date
    return measures


def fmt(x: float | None) -> str:
    if x is None:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def write_results(measures: list[Measure], json_path: Path, md_path: Path) -> None:
    write_text(json.dumps([asdict(m) for m in measures], indent=2, ensure_ascii=False) + "\n", json_path)
    rows = ["| measure | value | reference | ratio | target | met |", "|---|---|---|---|---|---|"]
    for m in measures:
        met = {True: "yes", False: "**no**", None: "–"}[m.met]
        rows.append(
            f"| {m.name} | {fmt(m.value)} {m.unit} | {m.reference}: {fmt(m.reference_value)} | "
            f"{fmt(m.ratio)} | {m.target} | {met} |"
        )
    notes = [f"- **{m.name}**: {m.note} (`{m.command}`)" for m in measures if m.note]
    host = measures[0].machine if measures else machine()
    date = measures[0].date if measures else ""
    md = "\n".join(
        [
            "# Benchmarks",
            "",
            "Written by `make bench` (`python -m benchmarks.bench`); the raw figures are in",
            "[`benchmarks/results.json`](benchmarks/results.json). Every comparison is two things measured",
            "side by side in the same run, so the ratio is the figure to read: absolute times move with",
            "the machine and its load.",
            "",
            f"Machine: {host}. Date: {date}.",
            "",
            *rows,
            "",
            "## Notes",
            "",
            *notes,
            "",
        ]
    )
    write_text(md, md_path)
