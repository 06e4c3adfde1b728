"""Keeping child processes from outliving the process that started them."""
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(signum=signal.SIGTERM, parent_pid=None):
    """Ask the kernel to send ``signum`` to this process when its parent dies, even by SIGKILL.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere, or where it cannot be
    asked, nothing is asked. The kernel's watch needs nothing of this process:
    it works while a busy loop holds it. Safe in a ``preexec_fn`` and right
    after ``fork``.

    Returns ``False`` when ``parent_pid`` is given and is no longer this
    process's parent: the parent died before the request took effect (the
    kernel would never send the signal), so the caller should exit.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signum))
        except (OSError, AttributeError):
            pass
    return parent_pid is None or os.getppid() == parent_pid
