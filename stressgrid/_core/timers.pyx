# cython: freethreading_compatible = False
"""The timers of a worker's devices, in one heap per event loop behind one loop timer.

A loop timer costs a device a handle, the loop's timer object and libuv's (about
450 bytes with uvloop), and a device in a connect storm or a sleep would hold one
each. Here every timed thing of a loop, the sleeps of ``delay`` and ``pace``
(``stressgrid._core.sleeps``) and the request deadlines of the protocol clients
(``stressgrid._core.deadline``), is a ``Timed`` entry of that loop's
``TimerQueue``, behind one loop timer set for the earliest.

Timer slack. An entry waits from ``due_us`` to ``latest_us``: a wait of ``w`` may
end up to ``w / 1024`` later (0.1%), never more than ``MAX_SLACK_US`` (Linux gives
``poll`` and ``select`` timeouts the same allowance). The heap is ordered on
``latest_us`` and the loop timer set for the earliest of them; when it fires, every
entry from the top of the heap that is due by then leaves it and is expired, in
heap order. Waits shorter than about a second keep their time within the loop
timers' millisecond (``SLACK_US``), and so does an entry pushed ``exact`` (``pace``'s
ticks, which the steps after them are measured from); long ones come together:
100,000 devices that beat every 120 s each at its own moment wake their loop every
100 ms for a batch of about 80, not 830 times a second for one. On this 2-core
machine a wake-up costs a process about 25 us of CPU (switching in and out,
``epoll_wait``); the batch also reaches the target together and comes back together.
"""
from libc.stdint cimport int64_t

from stressgrid._core.clock cimport monotonic_us

# The loop's timers count whole milliseconds: an entry due within this is due now.
cdef int64_t SLACK_US = 500
# How late, at most, an entry may expire, and what share of its wait (a right shift).
MAX_SLACK_US = 100_000
SLACK_SHIFT = 10


cdef class Timed:
    """An entry of a ``TimerQueue``; subclasses say what expiring does."""

    def __cinit__(self):
        self.index = -1

    cdef expire(self):
        """Called once the entry is due, after it left the heap."""
        raise NotImplementedError


cdef class TimerQueue:
    """The pending ``Timed`` entries of one event loop, earliest first, behind one loop timer."""

    def __cinit__(self, loop, int slack_shift=SLACK_SHIFT, int64_t max_slack_us=MAX_SLACK_US):
        self.loop = loop
        self.heap = []
        self.handle = None
        self.handle_at_us = 0
        self.slack_shift = slack_shift
        self.max_slack_us = max_slack_us

    def slack_us(self, int64_t wait_us):
        """How late an entry that waits ``wait_us`` may expire."""
        return self._slack(wait_us)

    cdef inline int64_t _slack(self, int64_t wait_us):
        if wait_us <= 0:
            return 0
        wait_us >>= self.slack_shift
        return wait_us if wait_us < self.max_slack_us else self.max_slack_us

    @property
    def pending(self):
        """How many entries wait."""
        return len(self.heap)

    cdef push(self, Timed entry, int64_t due_us, bint exact=False):
        """Put ``entry`` (out of the heap) in it, due at ``due_us``, with its slack unless ``exact``."""
        entry.queue = self
        entry.due_us = due_us
        entry.latest_us = due_us if exact else due_us + self._slack(due_us - monotonic_us())
        entry.index = len(self.heap)
        self.heap.append(entry)
        self._sift_up(entry.index)
        if self.handle is None or entry.latest_us < self.handle_at_us:
            self._arm(entry.latest_us)

    cdef remove(self, Timed entry):
        """Take ``entry`` out of the heap, if it is in it."""
        if entry.index >= 0:
            self._remove_at(entry.index)

    cdef _arm(self, int64_t due_us):
        if self.handle is not None:
            self.handle.cancel()
        cdef int64_t wait_us = due_us - monotonic_us()
        self.handle_at_us = due_us
        self.handle = self.loop.call_later(wait_us / 1e6 if wait_us > 0 else 0, self._fire)

    def _fire(self):
        cdef Timed entry
        cdef int64_t now = monotonic_us()
        cdef list due = []
        self.handle = None
        # Take every due entry out first: expiring one may push entries (a deadline set
        # again), and those wait for the next loop timer, however soon it is. The first
        # entry not due yet ends the batch (one further down may be due: it keeps its slack).
        while self.heap and (<Timed>self.heap[0]).due_us <= now + SLACK_US:
            entry = <Timed>self.heap[0]
            self._remove_at(0)
            due.append(entry)
        # The loop timer is set for what is left before anything expires: an entry pushed
        # meanwhile moves it only earlier (set by the first push instead, a deadline armed
        # again a minute out held back every entry due before that minute).
        if self.heap:
            self._arm((<Timed>self.heap[0]).latest_us)
        for entry in due:
            try:
                entry.expire()
            except Exception as exc:  # noqa: BLE001 - one entry's failure must not cost the others theirs
                self.loop.call_exception_handler({"message": "a timer's callback failed", "exception": exc})

    cdef _remove_at(self, Py_ssize_t index):
        cdef list heap = self.heap
        cdef Timed removed = <Timed>heap[index]
        cdef Timed last = <Timed>heap.pop()
        removed.index = -1
        if last is removed:
            return
        heap[index] = last
        last.index = index
        self._sift_up(index)
        self._sift_down(last.index)

    cdef _sift_up(self, Py_ssize_t index):
        cdef list heap = self.heap
        cdef Timed item = <Timed>heap[index]
        cdef Timed parent
        while index > 0:
            parent = <Timed>heap[(index - 1) >> 1]
            if parent.latest_us <= item.latest_us:
                break
            heap[index] = parent
            parent.index = index
            index = (index - 1) >> 1
        heap[index] = item
        item.index = index

    cdef _sift_down(self, Py_ssize_t index):
        cdef list heap = self.heap
        cdef Py_ssize_t size = len(heap)
        cdef Timed item = <Timed>heap[index]
        cdef Timed child
        cdef Py_ssize_t pick
        while True:
            pick = 2 * index + 1
            if pick >= size:
                break
            if pick + 1 < size and (<Timed>heap[pick + 1]).latest_us < (<Timed>heap[pick]).latest_us:
                pick += 1
            child = <Timed>heap[pick]
            if item.latest_us <= child.latest_us:
                break
            heap[index] = child
            child.index = index
            index = pick
        heap[index] = item
        item.index = index


cdef TimerQueue _queue = None


cdef TimerQueue timers_of(loop):
    """The timer queue of ``loop`` (a worker has one loop; tests make one after another)."""
    global _queue
    if _queue is None or _queue.loop is not loop:
        _queue = TimerQueue(loop)
    return _queue


def timer_queue(loop):
    """The ``TimerQueue`` of ``loop`` that sleeps and deadlines share."""
    return timers_of(loop)
