"""Terminal views: a live rich panel (bars per class; modality lights green = present, amber =
reconstructed, red = missing; transcript; latency) when stdout is a TTY, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

from engine.frames import EmotionEvent
from engine.sinks.base import Sink

COLOURS = {"present": "green", "reconstructed": "yellow", "missing": "red"}
SYMBOLS = {"present": "+", "reconstructed": "~", "missing": "x"}


def plain_line(ev: EmotionEvent) -> str:
    probs = " ".join(f"{k}={v:.2f}" for k, v in (ev.probs or {}).items()) or "no fusion"
    mods = " ".join(f"{m[0]}{SYMBOLS[h.state]}" for m, h in ev.modalities.items())
    expert = ev.experts.get("face")
    ex = f" face-expert={expert.label}" if expert else ""
    return (
        f"#{ev.seq:04d} [{ev.t_start:6.2f}-{ev.t_end:6.2f}s] {ev.label or '-':>3} ({probs}) "
        f'[{mods}] e2e={ev.e2e_latency_ms:.0f}ms{ex} "{ev.transcript}"'
    )


class PlainSink(Sink):
    name = "plain"

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    async def handle(self, event: EmotionEvent) -> None:
        print(plain_line(event), file=self.stream, flush=True)


class RichSink(Sink):
    """Live panel redrawn on every event (rich.live)."""

    name = "rich"

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console()
        self._live: Any = None
        self.info: dict = {}

    async def start(self, info: dict) -> None:
        from rich.live import Live

        self.info = info
        self._live = Live(self._render(None), console=self.console, refresh_per_second=8, transient=False)
        self._live.start()

    def _render(self, ev: EmotionEvent | None) -> Any:
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        title = f"CM-ARR live  model={self.info.get('model', '?')}  backend={self.info.get('backend', '?')}"
        if ev is None:
            return Panel(Text("waiting for the first window..."), title=title)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right")
        grid.add_column()
        grid.add_row(
            "window", f"#{ev.seq}  {ev.t_start:.2f}-{ev.t_end:.2f} s   condition={ev.condition or '-'}"
        )
        for name, p in (ev.probs or {}).items():
            bar = "█" * int(round(p * 30))
            style = "bold magenta" if name == ev.label else "cyan"
            grid.add_row(name, Text(f"{bar:<30} {p:5.2f}", style=style))
        if ev.probs is None:
            grid.add_row("probs", Text("no usable modality: nothing to fuse", style="red"))
        lights = Text()
        for m, h in ev.modalities.items():
            lights.append("● ", style=COLOURS[h.state])
            lights.append(f"{m} {h.state}" + (f" ({h.reason})" if h.reason else "") + "   ")
        grid.add_row("modalities", lights)
        grid.add_row(
            "transcript", Text(ev.transcript + (f" [{ev.tentative}]" if ev.tentative else ""), style="white")
        )
        if ev.face is not None:
            grid.add_row(
                "face",
                f"box={tuple(round(v) for v in ev.face.box) if ev.face.box else None} "
                f"score={ev.face.score:.2f}",
            )
        for name, ex in ev.experts.items():
            grid.add_row(
                f"{name} expert", f"{ex.label} " + " ".join(f"{k}={v:.2f}" for k, v in ex.probs.items())
            )
        lat = " ".join(f"{k}={v:.0f}" for k, v in ev.latency_ms.items())
        grid.add_row("latency ms", f"e2e={ev.e2e_latency_ms:.0f}  {lat}")
        if any(ev.dropped.values()):
            grid.add_row("dropped", Text(str(ev.dropped), style="red"))
        if not ev.trained:
            grid.add_row(
                "", Text("UNTRAINED fusion model: probabilities are not meaningful", style="bold red")
            )
        return Panel(grid, title=title)

    async def handle(self, event: EmotionEvent) -> None:
        if self._live is not None:
            self._live.update(self._render(event))

    async def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def console_sink(force_plain: bool = False) -> Sink:
    """Rich live view when stdout is a terminal, plain lines otherwise."""
    if not force_plain and sys.stdout.isatty():
        return RichSink()
    return PlainSink()
