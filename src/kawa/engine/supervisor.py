"""`<system> workers N`: a small supervisor process that runs N worker processes, as Fluentd does.

The supervisor imports no asyncio and no plugin: it starts `kawa --worker-id i` children, forwards
SIGTERM/SIGINT/SIGHUP/SIGUSR1/SIGUSR2/SIGCONT to them, restarts a worker that dies unexpectedly
(with a growing delay), and exits when every worker has stopped after a stop signal. With one worker
there is no supervisor at all: the worker is the process (Fluentd always runs two).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Sequence

from kawa.log import Logger

RESTART_DELAY_MAX = 60.0


class Supervisor:
    def __init__(self, workers: int, worker_args: Sequence[str], log: Logger, *,
                 restart_interval: float = 0.0) -> None:
        self.workers = workers
        self.worker_args = list(worker_args)
        self.log = log
        self.restart_interval = restart_interval
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts: dict[int, int] = {}
        self.stopping = False

    def _spawn(self, worker_id: int) -> None:
        cmd = [sys.executable, "-m", "kawa", *self.worker_args, "--worker-id", str(worker_id)]
        self.procs[worker_id] = subprocess.Popen(cmd)
        self.log.info(f"spawn command to worker{worker_id}", pid=self.procs[worker_id].pid)

    def _forward(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.stopping:
                self.log.warn("Received a second stop signal: killing workers")
                for proc in self.procs.values():
                    proc.kill()
                return
            self.stopping = True
            self.log.info("Received graceful stop")
        if signum == signal.SIGUSR1:
            self.log.reopen_file()          # its own log file too (logrotate's postrotate)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT):
            signal.signal(sig, self._forward)
        for worker_id in range(self.workers):
            self._spawn(worker_id)
        exit_code = 0
        while self.procs:
            time.sleep(0.2)
            for worker_id, proc in list(self.procs.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del self.procs[worker_id]
                if self.stopping:
                    exit_code = max(exit_code, rc)
                    continue
                if rc == 2:          # configuration problem: restarting would fail the same way
                    self.log.error(f"worker{worker_id} stopped: configuration error", exit_code=rc)
                    self._forward(signal.SIGTERM, None)
                    exit_code = 2
                    continue
                count = self.restarts[worker_id] = self.restarts.get(worker_id, 0) + 1
                delay = min(max(self.restart_interval, 2 ** min(count, 6) / 4), RESTART_DELAY_MAX)
                self.log.warn(f"worker{worker_id} finished unexpectedly; restarting in {delay:.1f}s",
                              exit_code=rc)
                time.sleep(delay)
                if not self.stopping:
                    self._spawn(worker_id)
        self.log.info("kawa supervisor finished", exit_code=exit_code)
        return exit_code


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The command line for workers: the supervisor's own, minus flags only the supervisor uses."""
    return [a for a in argv if a not in ("--dry-run", "--show-config")]
