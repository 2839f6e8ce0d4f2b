"""`qpde run`'s live display: one line per variant showing its current stage, and a sweep total.

It is driven by the sweep's `announce(variant, stage)` callbacks (`run_sweep(on_variant=...)`); on a
terminal it is a rich progress display, elsewhere (a pipe, a log file, CI=true) one plain line per
stage, so logs stay readable."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qpde.config import Variant
from qpde.quant import parse_scenario


def live_display_wanted(console: Console) -> bool:
    """A live display only on an interactive terminal and never in CI (CI=true or 1)."""
    return console.is_terminal and console.is_interactive and os.environ.get("CI", "").lower() not in ("true", "1")


class SweepProgress:
    """Variants × stages. Use as a context manager; `announce` is the sweep's callback."""

    def __init__(self, console: Console, variants: Sequence[Variant], backends: Sequence[str], *,
                 live: bool | None = None):
        self.console, self.backends = console, tuple(backends)
        self.live = live_display_wanted(console) if live is None else live
        self.progress = Progress(
            TextColumn("{task.fields[name]}", style="bold"), TextColumn("{task.fields[stage]}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=not self.live,
        )
        self.total = self.progress.add_task("", name="sweep", stage="variants", total=len(variants))
        self.tasks: dict[str, int] = {}
        self.finished: set[str] = set()
        for variant in variants:
            self._task(variant)

    def _stages(self, variant: Variant) -> list[str]:
        return ["train"] if parse_scenario(variant.scenario).is_float else ["train", *self.backends]

    def _task(self, variant: Variant) -> int:
        if variant.id not in self.tasks:
            self.tasks[variant.id] = self.progress.add_task(
                "", name=variant.id, stage="queued", total=len(self._stages(variant)))
        return self.tasks[variant.id]

    def announce(self, variant: Variant, stage: str) -> None:
        if not self.live:
            self.console.print(f"[bold]{variant.id}[/bold]: {stage}")
            return
        task, stages = self._task(variant), self._stages(variant)
        if stage == "done":
            self.progress.update(task, stage="done", completed=len(stages))
            if variant.id not in self.finished:
                self.finished.add(variant.id)
                self.progress.advance(self.total)
            return
        done = stages.index(stage) if stage in stages else 0
        self.progress.update(task, stage=stage, completed=done)

    def __enter__(self) -> SweepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)
