"""Waits over the messages a test's fake peer receives, that never lose one.

A fake peer (the fake coordinator, a ROUTER driving a worker) keeps every
message it reads in ``received``. Two kinds of wait read from it:

- ``wait_until(condition)`` / ``expect(kind)`` wait for a *message*. They look
  at every message received since the *cursor*, not only at what arrives after
  the call: a message read while the test waited for something else is still
  there. The cursor moves past the message a wait matched, and to the end when
  the test sends a command or calls ``mark()`` (what came before a command
  cannot answer it).
- ``wait_for_state(condition)`` waits for something outside the stream (a
  server's client count, a process's children). It reads messages meanwhile,
  keeping them for later waits, and never moves the cursor.
"""
import collections
import time

Received = collections.namedtuple("Received", "at identity message")

# How often ``wait_for_state`` checks its condition when no message comes.
STATE_POLL_S = 0.02


class Mailbox:
    """Base of a fake peer: ``_read(timeout)`` returns ``(identity, message)`` or ``None``."""

    def __init__(self):
        self.received = []  # Received(monotonic time, identity, message or WireError)
        self.matched = None  # the Received the latest message wait returned
        self._cursor = 0

    def _read(self, timeout):
        raise NotImplementedError

    def receive(self, timeout):
        """Read one message into ``received`` within ``timeout`` s; whether one came."""
        got = self._read(timeout)
        if got is None:
            return False
        self.received.append(Received(time.monotonic(), *got))
        return True

    def mark(self):
        """From now on, message waits look only at what arrives later; returns the time."""
        self._cursor = len(self.received)
        return time.monotonic()

    def wait_until(self, condition, timeout, what="the condition"):
        """The first message since the cursor for which ``condition(message)`` holds.

        Waits up to ``timeout`` s for it; the cursor then moves past it.
        """
        deadline = time.monotonic() + timeout
        index = self._cursor
        while True:
            while index < len(self.received):
                entry = self.received[index]
                index += 1
                if condition(entry.message):
                    self._cursor = index
                    self.matched = entry
                    return entry.message
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.receive(remaining):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                     f"last messages: {self._last_kinds()}")

    def expect(self, kind, timeout=10.0, where=lambda message: True):
        """The first message of class ``kind`` since the cursor (for which ``where`` holds)."""
        return self.wait_until(lambda m: isinstance(m, kind) and where(m), timeout, kind.__name__)

    def wait_for_state(self, condition, timeout, what="the condition"):
        """Read messages until ``condition()`` is true (checked at least every 20 ms); returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                     f"last messages: {self._last_kinds()}")
            self.receive(min(remaining, STATE_POLL_S))

    def _last_kinds(self):
        return [type(entry.message).__name__ for entry in self.received[-20:]]
