# cython: freethreading_compatible = False
"""A wake-up at an instant of the monotonic microsecond clock, finer than the loop's timers.

The event loop's timers count whole milliseconds on a clock that may itself
move in millisecond steps, so a loop timer fires anywhere in the millisecond
after the one asked for. A schedule of iterations due every 10 to 100 us,
each to start within a millisecond of its time, needs better. On Linux a
``WakeTimer`` is a kernel timer file (``timerfd``) on ``CLOCK_MONOTONIC``,
the clock of ``monotonic_us``, armed at an absolute instant and watched by the
loop like a socket: the loop wakes when the kernel's timer fires, within its
timer slack (50 us by default). Elsewhere it falls back to a loop timer,
rounded up to the millisecond, so it never fires early.

``WakeTimer(loop, callback)`` calls ``callback()`` once at or after the
instant given to ``arm`` (``kernel_timer=False`` takes the fallback on Linux
too, for its tests); arming again moves that instant; ``disarm()``
forgets it; ``close()`` gives the timer file back. One per arrival-rate
executor: a handful per worker, not one per device.
"""
import os

from libc.errno cimport errno
from libc.stdint cimport int64_t

from posix.unistd cimport close

from stressgrid._core.clock cimport monotonic_us

cdef extern from *:
    """
    #ifdef __linux__
    #include <sys/timerfd.h>
    #include <unistd.h>
    static int sg_timer_open(void) {
        return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    }
    /* at_us >= 1: an all-zero time would disarm the timer instead. */
    static int sg_timer_arm(int fd, long long at_us) {
        struct itimerspec spec = {{0, 0}, {at_us / 1000000, (at_us % 1000000) * 1000}};
        return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL);
    }
    static int sg_timer_disarm(int fd) {
        struct itimerspec spec = {{0, 0}, {0, 0}};
        return timerfd_settime(fd, 0, &spec, NULL);
    }
    static void sg_timer_drain(int fd) {
        unsigned long long expirations;
        (void)!read(fd, &expirations, sizeof expirations);
    }
    #else
    static int sg_timer_open(void) { return -1; }
    static int sg_timer_arm(int fd, long long at_us) { return -1; }
    static int sg_timer_disarm(int fd) { return -1; }
    static void sg_timer_drain(int fd) { }
    #endif
    """
    int sg_timer_open() nogil
    int sg_timer_arm(int fd, long long at_us) nogil
    int sg_timer_disarm(int fd) nogil
    void sg_timer_drain(int fd) nogil


cdef class WakeTimer:
    """See the module docstring."""

    def __cinit__(self, loop, callback, bint kernel_timer=True):
        self.loop = loop
        self.callback = callback
        self.handle = None
        self.at_us = 0
        self.fd = sg_timer_open() if kernel_timer else -1
        if self.fd >= 0:
            loop.add_reader(self.fd, self._on_fired)

    @property
    def precise(self):
        """True when the kernel's timer file wakes it, False on the loop timer fallback."""
        return self.fd >= 0

    cpdef arm(self, int64_t at_us):
        """Call back once ``monotonic_us()`` has reached ``at_us`` (at once if it has)."""
        if at_us < 1:
            at_us = 1
        self.at_us = at_us
        if self.fd >= 0:
            if sg_timer_arm(self.fd, at_us) != 0:
                raise OSError(errno, f"cannot arm the wake timer: {os.strerror(errno)}")
            return
        if self.handle is not None:
            self.handle.cancel()
        # Rounded up to the loop's millisecond: late by less than one, never early.
        self.handle = self.loop.call_later(((at_us - monotonic_us() + 999) // 1000) / 1000.0, self._on_fired)

    cpdef disarm(self):
        """No wake-up any more."""
        self.at_us = 0
        if self.fd >= 0:
            sg_timer_disarm(self.fd)
        elif self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _on_fired(self):
        if self.fd >= 0:
            sg_timer_drain(self.fd)
        else:
            self.handle = None
        if self.at_us == 0:
            return  # disarmed after the kernel fired it, before the loop read it
        if monotonic_us() < self.at_us:
            # The loop timer's millisecond ran out before the instant did.
            if self.fd < 0:
                self.arm(self.at_us)
            return
        self.at_us = 0
        self.callback()

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)

    def close(self):
        """Disarm, and give the timer file back to the system (idempotent)."""
        self.disarm()
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
