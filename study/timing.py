"""The wall time of the notebook's sections, shown as they start and end.

``make run`` shows the notebook's outputs in the terminal as they come (papermill's ``--log-output``): the line a
section prints when it starts says which part of the study is running, and the one it prints at its end how long
that part took. The same times go to ``log/results.json``.
"""

import time

from study.benches import duration


class Sections:
    """One section open at a time: :meth:`start` opens one (ending the one still open), :meth:`end` ends it;
    ``times`` maps each ended section's name to its wall time in seconds (the last time, if it ran again)."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.started_at = clock()
        self.times = {}
        self.current = None
        self._since = None

    def start(self, name):
        """Print ``== name`` and start timing it."""
        if self.current is not None:
            self.end()
        self.current, self._since = name, self.clock()
        print(f"== {name}")

    def end(self):
        """End the open section: print ``== name: <wall time>`` and keep the seconds in ``times``."""
        if self.current is None:
            raise RuntimeError("no section is open: start one first")
        name, seconds = self.current, self.clock() - self._since
        self.times[name], self.current = seconds, None
        print(f"== {name}: {duration(seconds)}")

    def total(self):
        """Seconds since this clock was made (the notebook's start)."""
        return self.clock() - self.started_at
