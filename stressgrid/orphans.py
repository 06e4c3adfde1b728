"""Keeping child processes from outliving the process that started them."""
import signal
import sys


def die_with_parent():
    """Ask the kernel to SIGTERM this process when its parent dies, even by SIGKILL.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere, or where it cannot be
    asked, nothing happens. Safe in a ``preexec_fn`` and right after ``fork``.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
