"""Progress for the stages that take more than a few seconds (tokenize, training, the lyrics
evaluation's passes): a tqdm bar on a terminal, periodic plain lines through the stage's own logger
elsewhere (CI, a Prefect worker, `dvc repro > log`, pytest), so a log stays readable and Prefect's
log capture, which listens to the `tasks.*` loggers, shows them. `PIPELINE_PROGRESS=bar|log|off`
forces a mode; unset (or `auto`), stderr decides: a terminal gets the bar.

Only counters and the clock are read here: nothing touches a tensor or an RNG, so a run is the same
with progress on or off."""

import functools
import logging
import math
import os
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

MODE_ENV = "PIPELINE_PROGRESS"
MODES = ("bar", "log", "off")
LOG_FRACTION = 0.1  # the log fallback writes a line every 10 % of the work ...
LOG_EVERY_S = 30.0  # ... or every 30 s, whichever comes first, and one at the end
LOG_QUIET_S = 5.0  # but none in the first 5 s: work done by then needs no progress, only its summary line
NOTE_EVERY_S = 0.5  # how often a bar's postfix (rate, loss, run ETA) is formatted anew

Clock = Callable[[], float]
Note = Callable[[], str] | None


@functools.cache
def stderr_is_terminal() -> bool:
    """Decided once per process: both the bar and the log handler write to stderr."""
    return sys.stderr.isatty()


def progress_mode() -> str:
    """ "bar", "log" or "off": `PIPELINE_PROGRESS` when set to one of them, else by the terminal check."""
    forced = os.environ.get(MODE_ENV, "").strip().lower()
    if forced in MODES:
        return forced
    return "bar" if stderr_is_terminal() else "log"


def duration(seconds: float | None) -> str:
    return "?" if seconds is None or not math.isfinite(seconds) else tqdm.format_interval(seconds)


def per_second(count: float, seconds: float) -> str:
    rate = count / seconds if seconds > 0 else 0.0
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


class Tracker:
    """`done` of `total` (None: not known) units of work, shown as `mode` says (default:
    `progress_mode()`). `update(n, note)` after each piece; `note`, a callable, adds a few words
    (formatted only when shown). A context manager: the final log line is written on a clean exit.
    The log fallback stays silent for work that ends within `LOG_QUIET_S`."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        logger: logging.Logger,
        mode: str | None = None,
        clock: Clock = time.monotonic,
    ):
        self.total, self.desc, self.unit, self.logger, self.clock = total or None, desc, unit, logger, clock
        self.mode = mode or progress_mode()
        self.done, self.started = 0, clock()
        self.last_line, self.next_mark, self.noted, self.logged = self.started, self._mark_after(0), -math.inf, 0
        self.bar = None
        if self.mode == "bar":  # leave=False: once done the bar goes, and the stage's summary line stays
            big = self.total is None or self.total >= 10_000  # 12.3k/40.0k rows; batches stay whole numbers
            self.bar = tqdm(
                total=self.total, desc=desc, unit=f" {unit}", unit_scale=big, leave=False, dynamic_ncols=True
            )

    def _mark_after(self, done: int) -> float:
        """The next count at which the log fallback writes a line: the next whole 10 %."""
        if not self.total:
            return math.inf
        step = self.total * LOG_FRACTION
        return (math.floor(done / step) + 1) * step

    def update(self, n: int = 1, note: Note = None) -> None:
        self.done += n
        if self.mode == "off":
            return
        now = self.clock()
        if self.bar is not None:
            if note and now - self.noted >= NOTE_EVERY_S:
                self.bar.set_postfix_str(note(), refresh=False)
                self.noted = now
            self.bar.update(n)
        elif self.done >= self.next_mark or now - self.last_line >= LOG_EVERY_S:
            if now - self.started >= LOG_QUIET_S:
                self.log_line(now, note)
            else:  # a mark passed in the quiet start: the first line waits for the next one
                self.next_mark = self._mark_after(self.done)

    def log_line(self, now: float, note: Note = None) -> None:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            left = (self.total - self.done) / rate if rate else None
            where = f"{self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%)"
            timing = f"{duration(elapsed)} elapsed, ETA {duration(left)}"
        else:
            where, timing = f"{self.done:,} {self.unit}", f"{duration(elapsed)} elapsed"
        extra = f"; {note()}" if note else ""
        self.logger.info(
            "%s: %s, %s %s/s, %s%s", self.desc, where, per_second(self.done, elapsed), self.unit, timing, extra
        )
        self.last_line, self.next_mark, self.logged = now, self._mark_after(self.done), self.done

    def close(self, note: Note = None, finished: bool = True) -> None:
        """Remove the bar; in log mode, write the last line (unless the work stopped on an error)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "log" and finished and self.done != self.logged:  # not when 100 % was just written
            now = self.clock()
            if now - self.started >= LOG_QUIET_S:
                self.log_line(now, note)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(finished=exc_type is None)


class EpochProgress:
    """Training's display: one `Tracker` over each epoch's batches, noting items/s (`item`: what
    the loss is a mean over: tokens, reviews), the running train loss, and the run's ETA given the
    epoch budget. Early stopping or `max_minutes` can end the run sooner, hence "≤". The run ETA
    takes the epochs seen so far in this process (validation and checkpoint included), or, in the
    first, this epoch's projection. `enabled=False` (a rank other than 0) shows nothing."""

    def __init__(
        self,
        epochs: int,
        steps: int,
        item: str,
        logger: logging.Logger,
        enabled: bool = True,
        mode: str | None = None,
        clock: Clock = time.monotonic,
    ):
        self.epochs, self.steps, self.item, self.logger, self.clock = epochs, steps, item, logger, clock
        self.mode = (mode or progress_mode()) if enabled else "off"
        self.epoch, self.epoch_started, self.past_epochs, self.tracker = 0, None, [], None
        self.items, self.loss_sum = 0, 0.0

    def start(self, epoch: int) -> None:
        now = self.clock()
        if self.epoch_started is not None:
            self.past_epochs.append(now - self.epoch_started)
        self.epoch, self.epoch_started, self.items, self.loss_sum = epoch, now, 0, 0.0
        self.tracker = Tracker(
            self.steps, f"epoch {epoch}/{self.epochs}", "batches", self.logger, self.mode, self.clock
        )

    def step(self, items: int, loss: float) -> None:
        """After a batch: `loss` is its mean over `items` (the float the loop already read)."""
        self.items += items
        self.loss_sum += loss * items
        self.tracker.update(1, self.note)

    def end(self) -> None:
        self.tracker.close(self.note)

    def note(self) -> str:
        elapsed, done = self.clock() - self.epoch_started, self.tracker.done
        loss = self.loss_sum / self.items if self.items else math.nan
        run_left = None
        if done:
            per_batch = elapsed / done
            per_epoch = sum(self.past_epochs) / len(self.past_epochs) if self.past_epochs else per_batch * self.steps
            run_left = per_batch * max(0, self.steps - done) + (self.epochs - self.epoch) * per_epoch
        return f"{per_second(self.items, elapsed)} {self.item}/s, loss {loss:.3f}, run ETA ≤{duration(run_left)}"
