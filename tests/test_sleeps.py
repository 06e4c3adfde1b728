"""The sleeps behind ``delay``: one queue per loop, each sleep a future to asyncio, on real event
loops (asyncio's and uvloop's)."""
import asyncio
import gc
import random

import pytest
import uvloop

from stressgrid._core.device import now_us
from stressgrid._core.sleeps import sleep_until
from stressgrid._core.timers import TimerQueue, timer_queue

pytestmark = pytest.mark.unit

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
SLACK_US = 500  # the loop timers' millisecond: a sleep this close to its time is due


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    loop = LOOPS[request.param]()
    yield loop.run_until_complete
    loop.close()


def test_a_sleep_ends_at_its_time_and_sleeps_end_in_the_order_they_are_due(run):
    async def main():
        queue = TimerQueue(asyncio.get_running_loop())
        ended = []

        async def sleeper(due_us):
            await sleep_until(queue, due_us)
            ended.append((due_us, now_us()))

        start = now_us()
        rng = random.Random(7)
        dues = [start + rng.randrange(0, 60_000) for _ in range(300)]
        await asyncio.gather(*(sleeper(due) for due in dues))
        assert queue.pending == 0
        assert all(at + SLACK_US >= due for due, at in ended)
        # Each loop timer ends every sleep due within its millisecond, in the heap's order.
        assert [due for due, _ in ended] == sorted(dues)

    run(main())


def test_a_sleep_already_due_ends_on_the_next_loop_turn(run):
    async def main():
        queue = TimerQueue(asyncio.get_running_loop())
        sleep = sleep_until(queue, now_us() - 5_000)
        assert not sleep.done()
        assert await sleep is None
        assert sleep.done() and not sleep.cancelled() and sleep.result() is None and sleep.exception() is None

    run(main())


def test_a_cancelled_task_cancels_its_sleep_which_leaves_the_queue_at_once(run):
    async def main():
        queue = TimerQueue(asyncio.get_running_loop())
        sleeps = []

        async def sleeper():
            sleeps.append(sleep_until(queue, now_us() + 60_000_000))
            await sleeps[0]

        task = asyncio.ensure_future(sleeper())
        while not sleeps:  # the task takes its sleep and waits on it in one step
            await asyncio.sleep(0)
        assert queue.pending == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert queue.pending == 0 and sleeps[0].cancelled()
        # The sleep keeps nothing of the task: no wakeup callback is left in it.
        gc.collect()
        assert not [ref for ref in gc.get_referents(sleeps[0]) if getattr(ref, "__self__", None) is task]

    run(main())


def test_asyncio_takes_a_sleep_as_a_future(run):
    async def main():
        loop = asyncio.get_running_loop()
        queue = TimerQueue(loop)
        assert asyncio.isfuture(sleep_until(queue, now_us()))
        # wait_for cancels a sleep that outlasts it.
        long = sleep_until(queue, now_us() + 60_000_000)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(long, 0.02)
        assert long.cancelled() and queue.pending == 0  # the first sleep ended meanwhile
        assert await asyncio.gather(sleep_until(queue, now_us() + 1_000), sleep_until(queue, now_us() + 2_000)) == [None, None]
        assert await asyncio.shield(sleep_until(queue, now_us() + 1_000)) is None
        # Callbacks: each called once, with the sleep, on the loop; a removed one not at all.
        sleep = sleep_until(queue, now_us() + 1_000)
        called = []
        sleep.add_done_callback(lambda s: called.append(("a", s)))
        sleep.add_done_callback(lambda s: called.append(("b", s)))
        removed = sleep.add_done_callback(called.append) or called.append
        assert sleep.remove_done_callback(removed) == 1
        await sleep
        await asyncio.sleep(0)
        assert called == [("a", sleep), ("b", sleep)]
        late = []
        sleep.add_done_callback(late.append)
        await asyncio.sleep(0)
        assert late == [sleep]
        assert sleep.get_loop() is loop and not sleep.cancel()

    run(main())


def test_a_pending_sleep_refuses_its_result_and_a_cancelled_one_raises(run):
    async def main():
        queue = TimerQueue(asyncio.get_running_loop())
        sleep = sleep_until(queue, now_us() + 60_000_000)
        with pytest.raises(asyncio.InvalidStateError):
            sleep.result()
        assert sleep.cancel() and sleep.cancelled() and not sleep.cancel()
        with pytest.raises(asyncio.CancelledError):
            sleep.result()
        with pytest.raises(asyncio.CancelledError):
            await sleep
        assert queue.pending == 0

    run(main())


def test_removing_from_anywhere_in_the_heap_keeps_the_order(run):
    async def main():
        queue = TimerQueue(asyncio.get_running_loop())
        start = now_us()
        rng = random.Random(11)
        sleeps = [sleep_until(queue, start + rng.randrange(1_000, 40_000)) for _ in range(200)]
        cancelled = set(rng.sample(range(200), 80))
        for index in cancelled:
            sleeps[index].cancel()
        assert queue.pending == 120
        order = []
        for sleep in sleeps:
            sleep.add_done_callback(order.append)
        await asyncio.gather(*sleeps, return_exceptions=True)
        await asyncio.sleep(0)
        ended = [s.due_us for s in order if not s.cancelled()]
        assert ended == sorted(s.due_us for i, s in enumerate(sleeps) if i not in cancelled)

    run(main())


def test_a_sleep_cancelled_by_what_ends_before_it_in_the_same_batch_stays_cancelled(run):
    async def main():
        queue = timer_queue(asyncio.get_running_loop())   # the one deadlines use too
        due = now_us() + 10_000
        first, second = sleep_until(queue, due), sleep_until(queue, due + 1)
        first.add_done_callback(lambda _: None)
        # A deadline due first in the same batch cancels the second sleep when it expires.
        from stressgrid._core.deadline import DeadlineTimer

        class Owner:
            def on_deadline(self):
                second.cancel()

        DeadlineTimer(asyncio.get_running_loop(), Owner()).arm(due - 1)
        await first   # its wake-up comes after the whole batch expired
        assert second.cancelled() and queue.pending == 0
    run(main())


def test_a_wait_may_end_a_thousandth_of_it_late_and_never_more_than_100_ms():
    queue = TimerQueue(asyncio.new_event_loop())
    assert [queue.slack_us(wait) for wait in (-5, 0, 1_000, 1_000_000, 30_000_000, 120_000_000)] == \
        [0, 0, 0, 976, 29_296, 100_000]
    sleep = sleep_until(queue, now_us() + 30_000_000)
    assert 29_290 <= sleep.latest_us - sleep.due_us <= 29_296  # the wait counts from the push
    # pace() sleeps exactly: the steps after a tick are measured from it.
    exact = sleep_until(queue, now_us() + 30_000_000, True)
    assert exact.latest_us == exact.due_us
    assert exact.due_us > sleep.due_us and queue.pending == 2
    sleep.cancel()
    exact.cancel()


def test_waits_within_each_others_slack_end_together_and_none_before_its_time(run):
    async def main():
        # A wait's slack is a quarter of it here (up to 60 ms), so that the test is short.
        queue = TimerQueue(asyncio.get_running_loop(), slack_shift=2, max_slack_us=60_000)
        start = now_us()
        first, second, third = (sleep_until(queue, start + ms * 1000) for ms in (200, 220, 400))
        # (the slack counts from each push, a few microseconds after the start)
        assert [round((s.latest_us - s.due_us) / 1000) for s in (first, second, third)] == [50, 55, 60]
        ended = {}
        together = []
        for name, sleep in (("first", first), ("second", second), ("third", third)):
            sleep.add_done_callback(lambda _, name=name: ended.setdefault(name, now_us()))
        first.add_done_callback(lambda _: together.append(second.done()))
        await asyncio.gather(first, second, third)
        # The loop timer waits for the first one's latest time (250 ms), when the second is due
        # too: one wake-up for both.
        assert together == [True]
        for name, sleep in (("first", first), ("second", second), ("third", third)):
            assert ended[name] + SLACK_US >= sleep.due_us
        assert queue.pending == 0

    run(main())
