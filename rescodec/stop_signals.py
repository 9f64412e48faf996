"""The signals that stop a command or a training run, where the platform has
them: Windows has no SIGHUP (a closed terminal), and naming it there would
fail every command at its start."""
from __future__ import annotations

import signal

HANGUP = getattr(signal, "SIGHUP", None)
STOP = tuple(s for s in (signal.SIGINT, signal.SIGTERM, HANGUP) if s is not None)
