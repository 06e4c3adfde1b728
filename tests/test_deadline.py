"""The deadline timer of the protocol clients, on real event loops (asyncio's and uvloop's)."""
import asyncio

import pytest
import uvloop

from stressgrid._core.deadline import SLACK_US, DeadlineTimer, passed
from stressgrid._core.device import now_us
from stressgrid._core.sleeps import sleep_until
from stressgrid._core.timers import timer_queue

pytestmark = pytest.mark.unit

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    loop = LOOPS[request.param]()
    yield loop.run_until_complete
    loop.close()


class Calls:
    """An owner: the times its timer called back; ``wait(n)`` until it did ``n`` times."""

    def __init__(self, then=None):
        self.times = []
        self.changed = asyncio.Event()
        self.then = then

    def on_deadline(self):
        self.times.append(now_us())
        self.changed.set()
        if self.then is not None:
            self.then()

    async def wait(self, count):
        while len(self.times) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


async def one_loop_round_after(loop, seconds):
    """Wait ``seconds`` on a loop timer of its own, then one more loop round."""
    done = loop.create_future()
    loop.call_later(seconds, done.set_result, None)
    await done
    await asyncio.sleep(0)


def test_calls_back_once_after_the_deadline(run):
    async def main():
        calls = Calls()
        timer = DeadlineTimer(asyncio.get_running_loop(), calls)
        deadline = now_us() + 20_000
        timer.arm(deadline)
        assert timer.armed and timer.deadline_us == deadline
        await calls.wait(1)
        assert calls.times[0] + SLACK_US >= deadline
        assert not timer.armed
        await one_loop_round_after(asyncio.get_running_loop(), 0.03)
        assert len(calls.times) == 1
    run(main())


def test_cancel_means_no_call(run):
    async def main():
        loop = asyncio.get_running_loop()
        calls = Calls()
        timer = DeadlineTimer(loop, calls)
        timer.arm(now_us() + 10_000)
        timer.cancel()
        assert not timer.armed
        await one_loop_round_after(loop, 0.03)
        assert calls.times == []
    run(main())


def test_a_later_deadline_moves_the_call_later(run):
    async def main():
        calls = Calls()
        timer = DeadlineTimer(asyncio.get_running_loop(), calls)
        timer.arm(now_us() + 10_000)
        later = now_us() + 60_000
        timer.arm(later)          # the loop timer stays at 10 ms and sets itself again
        await calls.wait(1)
        assert calls.times[0] + SLACK_US >= later
    run(main())


def test_an_earlier_deadline_moves_the_call_earlier(run):
    async def main():
        loop = asyncio.get_running_loop()
        calls = Calls()
        timer = DeadlineTimer(loop, calls)
        timer.arm(now_us() + 10_000_000)
        earlier = now_us() + 20_000
        timer.arm(earlier)
        await calls.wait(1)
        assert earlier - SLACK_US <= calls.times[0] < earlier + 5_000_000
    run(main())


def test_the_owner_may_arm_again_and_a_past_deadline_fires_at_once(run):
    async def main():
        loop = asyncio.get_running_loop()

        def again():
            if len(calls.times) == 1:
                timer.arm(now_us() + 15_000)

        calls = Calls(then=again)
        timer = DeadlineTimer(loop, calls)
        started = now_us()
        timer.arm(started - 1_000)     # already passed
        await calls.wait(2)
        assert calls.times[1] - calls.times[0] + SLACK_US >= 15_000
    run(main())


def test_passed_allows_the_slack():
    assert passed(1_000_000, 1_000_000)
    assert passed(1_000_000, 1_000_000 - SLACK_US)
    assert not passed(1_000_000, 1_000_000 - SLACK_US - 1)


@pytest.mark.parametrize("change", ["cancel", "arm later"])
def test_a_timer_changed_by_another_that_expires_in_the_same_batch_obeys_the_change(run, change):
    async def main():
        loop = asyncio.get_running_loop()
        later = []

        def change_second():
            if change == "cancel":
                second.cancel()
            else:
                later.append(now_us() + 30_000)
                second.arm(later[0])

        first_calls, second_calls = Calls(then=change_second), Calls()
        first = DeadlineTimer(loop, first_calls)
        second = DeadlineTimer(loop, second_calls)
        due = now_us() + 10_000
        first.arm(due)
        second.arm(due + 1)   # due in the same loop timer's batch, after the first
        await first_calls.wait(1)
        # The second is in its loop's queue once if armed again, not at all if cancelled.
        assert timer_queue(loop).pending == (0 if change == "cancel" else 1)
        await one_loop_round_after(loop, 0.06)
        if change == "cancel":
            assert second_calls.times == [] and not second.armed
        else:
            assert len(second_calls.times) == 1 and second_calls.times[0] + SLACK_US >= later[0]
    run(main())


@pytest.mark.parametrize("near_kind", ["deadline", "sleep"])
def test_an_owner_that_arms_its_timer_far_out_holds_back_no_earlier_entry(run, near_kind):
    # As an MQTT client does when its receive deadline passes: its timer goes on to the
    # keep-alive, a minute away. The queue's loop timer is set again while it expires that
    # batch; an entry due sooner (another device's deadline or sleep) keeps its time. It
    # once waited for the minute: 200 devices that beat every 30 s stopped after 10 s.
    async def main():
        loop = asyncio.get_running_loop()
        far = DeadlineTimer(loop, Calls(then=lambda: far.arm(now_us() + 60_000_000)))
        started = now_us()
        far.arm(started + 10_000)
        if near_kind == "deadline":
            near = Calls()
            DeadlineTimer(loop, near).arm(started + 30_000)
            await near.wait(1)   # 5 s at most
            ended = near.times[0]
        else:
            await asyncio.wait_for(sleep_until(timer_queue(loop), started + 30_000), 5)
            ended = now_us()
        assert ended + SLACK_US >= started + 30_000
        assert far.armed and timer_queue(loop).pending == 1
        far.cancel()
    run(main())
