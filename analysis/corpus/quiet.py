"""The local workers ignore SIGINT: Ctrl-C at a terminal reaches every process of its group, and only the
command should stop (its LocalCluster then closes the workers), not each worker with a traceback of its own.

A Dask worker plugin, so that a worker restarted by its nanny gets it too; a worker interrupted in its first
second, before the plugin reaches it, still prints one. Imported only where a LocalCluster starts.
"""
from __future__ import annotations

import signal
import threading

from distributed import WorkerPlugin


class QuietSigint(WorkerPlugin):
    def setup(self, worker) -> None:
        if threading.current_thread() is threading.main_thread():      # a worker's loop runs in its main thread
            signal.signal(signal.SIGINT, signal.SIG_IGN)
