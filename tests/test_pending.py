"""``Pending``, what a device awaits for a request: a future to asyncio, and to the device's
runner something whose completion steps the script at once, inside the protocol's callback."""
import asyncio

import pytest
import uvloop

from stressgrid._core.pending import new_pending
from stressgrid.plan import Address, Opts
from stressgrid.runtime.engine import Engine

pytestmark = pytest.mark.unit


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(coro):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    return run


def test_asyncio_takes_a_pending_as_a_future(run):
    async def main():
        loop = asyncio.get_running_loop()
        assert asyncio.isfuture(new_pending(loop))
        # wait_for cancels one that outlasts it; a cancelled one takes no result.
        slow = new_pending(loop)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow, 0.01)
        assert slow.cancelled() and slow.complete("late") is False
        with pytest.raises(asyncio.CancelledError):
            slow.result()
        # gather and shield take them; results come through set_result and complete alike.
        first, second = new_pending(loop), new_pending(loop)
        loop.call_soon(first.set_result, 1)
        loop.call_soon(second.complete, 2)
        assert await asyncio.gather(first, second) == [1, 2]
        third = new_pending(loop)
        loop.call_soon(third.set_result, 3)
        assert await asyncio.shield(third) == 3
        # An exception is raised where it is awaited, and kept.
        failing = new_pending(loop)
        loop.call_soon(failing.set_exception, KeyError("k"))
        with pytest.raises(KeyError):
            await failing
        assert isinstance(failing.exception(), KeyError)
        with pytest.raises(asyncio.InvalidStateError):
            failing.set_result(4)
        with pytest.raises(TypeError):
            new_pending(loop).set_exception(StopIteration())
        # Callbacks in the order they came, each once, with the pending; a removed one never.
        done = new_pending(loop)
        called = []
        done.add_done_callback(lambda p: called.append(("a", p)))
        done.add_done_callback(lambda p: called.append(("b", p)))
        done.add_done_callback(called.append)
        assert done.remove_done_callback(called.append) == 1
        assert done.complete("x") is True and called == []   # through the loop, not at once
        await asyncio.sleep(0)
        assert called == [("a", done), ("b", done)] and await done == "x"
        # Not done: no result yet.
        with pytest.raises(asyncio.InvalidStateError):
            new_pending(loop).result()
        assert done.get_loop() is loop

    run(main())


def test_await_yields_it_once_then_returns_its_value_or_raises_its_exception(run):
    async def awaiting(pending):
        return await pending

    async def main():
        loop = asyncio.get_running_loop()
        pending = new_pending(loop)
        coro = awaiting(pending)
        assert coro.send(None) is pending and pending._asyncio_future_blocking
        pending.complete({"body": 1})
        with pytest.raises(StopIteration) as stop:
            coro.send(None)
        assert stop.value.value == {"body": 1}
        # Resumed before it is done: the await was not a task's.
        early = awaiting(new_pending(loop))
        early.send(None)
        with pytest.raises(RuntimeError, match="await wasn't used with future"):
            early.send(None)
        failed = new_pending(loop)
        failed.set_exception(ValueError("bad"))
        with pytest.raises(ValueError, match="bad"):
            awaiting(failed).send(None)
        cancelled = new_pending(loop)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            awaiting(cancelled).send(None)

    run(main())


class Box:
    """What the test and the script share (``params["box"]``): the script's pendings and what
    it saw after each."""

    def __init__(self):
        self.made = []
        self.after = []
        self.ready = asyncio.Event()

    def new(self):
        pending = new_pending(asyncio.get_running_loop())
        self.made.append(pending)
        self.ready.set()
        return pending


SCRIPT = """
import asyncio
box = params["box"]
while True:
    value = await box.new()
    box.after.append((value, asyncio.current_task()))
"""


def run_script(drive):
    """One device runs ``SCRIPT`` with a ``Box``; ``drive(box)`` completes its pendings."""
    async def main():
        engine = Engine()
        box = Box()
        await engine.start_cohort("c", [(SCRIPT, {"box": box}, 1)],
                                  [Address("127.0.0.1", 9, "http", "127.0.0.1")], Opts())  # no connect: no request
        (runner,) = engine.cohorts["c"].tasks
        async with asyncio.timeout(10):
            await drive(box, runner)
            await engine.stop_cohort("c")
        errors = {k: v for k, v in engine.snapshot()["counters"].items() if k.endswith("_error_count")}
        assert errors == {}, engine.error_lines
        return box

    return uvloop.run(main())


async def wait_for_pending(box, count):
    while len(box.made) < count:
        box.ready.clear()
        await box.ready.wait()


def test_completing_outside_any_task_steps_the_script_before_complete_returns():
    async def drive(box, runner):
        loop = asyncio.get_running_loop()
        for number in range(3):
            await wait_for_pending(box, number + 1)
            seen = []
            called = asyncio.Event()
            # As a protocol's data_received: a loop callback, no task running.
            loop.call_soon(lambda n=number: (box.made[n].complete(n), seen.append(list(box.after)),
                                             called.set()))
            await called.wait()
            # The script's next step ran inside complete(): it saw the value, as its runner.
            assert seen[0][-1] == (number, runner)
            assert len(box.made) == number + 2   # and is waiting on its next pending

    run_script(drive)


def test_completing_inside_a_task_steps_the_script_through_the_loop():
    async def drive(box, runner):
        await wait_for_pending(box, 1)
        assert box.made[0].complete("v") is True
        assert box.after == []   # a task is running (this one): the step waits for the loop
        await wait_for_pending(box, 2)
        assert box.after == [("v", runner)]

    run_script(drive)


def test_a_stop_cancels_the_pending_the_device_waits_on():
    async def drive(box, runner):
        await wait_for_pending(box, 1)
        runner.cancel()   # cancels the pending it waits on, at once
        assert box.made[0].cancelled() and box.made[0].complete("late") is False

    box = run_script(drive)
    assert box.after == []
