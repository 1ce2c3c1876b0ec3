"""Progress for long steps: a line per stage, and a heartbeat naming what is awaited, never silence."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Progress:
    """Prints `[elapsed] stage: message` lines and, inside `stage`, a heartbeat every `every` seconds."""

    def __init__(self, emit: Callable[[str], None], every: float = 20.0):
        self.emit, self.every = emit, every
        self.started = time.monotonic()
        self.current = ""
        self.waiting_for = ""

    def say(self, message: str) -> None:
        """One progress line, stamped with the elapsed time and the current stage."""
        prefix = f"{self.current}: " if self.current else ""
        self.emit(f"[{time.monotonic() - self.started:5.0f}s] {prefix}{message}")

    def waiting(self, what: str) -> None:
        """Name what the stage is waiting for now; the heartbeat repeats it."""
        self.waiting_for = what
        self.say(what)

    @contextmanager
    def stage(self, name: str) -> Iterator[Progress]:
        """Run one stage with a heartbeat until it ends."""
        self.current, self.waiting_for = name, ""
        stage_started = time.monotonic()
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(self.every):
                self.say(f"still working ({time.monotonic() - stage_started:.0f} s in stage)"
                         + (f"; waiting for: {self.waiting_for}" if self.waiting_for else ""))

        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        outcome = "failed after"
        try:
            yield self
            outcome = "done in"
        finally:
            done.set()
            thread.join()
            self.say(f"{outcome} {time.monotonic() - stage_started:.0f} s")
            self.current = ""
