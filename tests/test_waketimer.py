"""The arrival-rate executor's wake timer, on real event loops: the kernel's timer file and the
loop-timer fallback, each held to the same contract."""
import asyncio
import os
import sys

import pytest
import uvloop

from stressgrid._core.device import now_us
from stressgrid._core.waketimer import WakeTimer

pytestmark = pytest.mark.unit

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=[(loop, kernel) for loop in sorted(LOOPS) for kernel in (True, False)],
                ids=lambda param: f"{param[0]}-{'timerfd' if param[1] else 'fallback'}")
def make(request):
    """``make(callback)``: a wake timer on a fresh loop (``make.run`` runs a coroutine on it)."""
    name, kernel_timer = request.param
    loop = LOOPS[name]()
    timers = []

    def new(callback):
        timer = WakeTimer(loop, callback, kernel_timer=kernel_timer)
        timers.append(timer)
        return timer

    new.run = loop.run_until_complete
    new.kernel_timer = kernel_timer
    yield new
    for timer in timers:
        timer.close()
    loop.close()


class Wakes:
    """A callback: the instants it was called at; ``wait(n)`` until it was called ``n`` times."""

    def __init__(self):
        self.times = []
        self.changed = asyncio.Event()

    def __call__(self):
        self.times.append(now_us())
        self.changed.set()

    async def wait(self, count):
        while len(self.times) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


def test_on_linux_the_kernel_timer_file_wakes_it(make):
    timer = make(Wakes())
    assert timer.precise == (make.kernel_timer and sys.platform.startswith("linux"))


def test_calls_back_once_at_or_after_the_instant_never_before(make):
    async def main():
        wakes = Wakes()
        timer = make(wakes)
        for delay_us in (300, 2_500, 20_000):
            at_us = now_us() + delay_us
            timer.arm(at_us)
            assert timer.at_us == at_us
            await wakes.wait(len(wakes.times) + 1)
            assert wakes.times[-1] >= at_us
            assert timer.at_us == 0
        marker = Wakes()
        make(marker).arm(now_us() + 20_000)
        await marker.wait(1)
        assert len(wakes.times) == 3  # once per arm, not again

    make.run(main())


def test_an_instant_already_passed_calls_back_at_once(make):
    async def main():
        wakes = Wakes()
        make(wakes).arm(now_us() - 1_000_000)
        await wakes.wait(1)
        make(wakes).arm(0)  # the clock's origin
        await wakes.wait(2)

    make.run(main())


def test_arming_again_moves_the_instant_either_way(make):
    async def main():
        wakes = Wakes()
        timer = make(wakes)
        timer.arm(now_us() + 60_000_000)
        at_us = now_us() + 2_000
        timer.arm(at_us)  # earlier: a wait of a minute would fail the wait's 5 s bound
        await wakes.wait(1)
        assert wakes.times[0] >= at_us
        timer.arm(now_us() + 1_000)
        later_us = now_us() + 30_000
        timer.arm(later_us)  # later: not called at the first instant
        await wakes.wait(2)
        assert wakes.times[1] >= later_us

    make.run(main())


def test_a_disarmed_timer_does_not_call_back(make):
    async def main():
        disarmed = Wakes()
        timer = make(disarmed)
        timer.arm(now_us() + 1_000)
        timer.disarm()
        assert timer.at_us == 0
        marker = Wakes()
        make(marker).arm(now_us() + 30_000)
        await marker.wait(1)
        assert disarmed.times == []

    make.run(main())


def test_a_timer_file_that_fired_before_a_disarm_is_read_and_ignored(make):
    async def main():
        disarmed = Wakes()
        timer = make(disarmed)
        timer.arm(now_us())
        # The loop has not run: the kernel's timer has fired, the loop has not read it yet.
        timer.disarm()
        marker = Wakes()
        make(marker).arm(now_us() + 20_000)
        await marker.wait(1)
        assert disarmed.times == []

    make.run(main())


def test_close_gives_the_timer_file_back_and_can_be_repeated(make):
    async def main():
        before = len(os.listdir("/proc/self/fd"))
        timers = [make(Wakes()) for _ in range(20)]
        for timer in timers:
            timer.arm(now_us() + 1_000_000)
        opened = len(os.listdir("/proc/self/fd"))
        assert opened - before == (20 if timers[0].precise else 0)
        for timer in timers:
            timer.close()
            timer.close()
            assert not timer.precise and timer.at_us == 0
        assert len(os.listdir("/proc/self/fd")) == before

    make.run(main())
