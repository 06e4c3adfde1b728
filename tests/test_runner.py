"""A device stepped by its ``DeviceRunner`` instead of an asyncio task: what a script could
count on from a task still holds (``current_task``, ``asyncio.timeout``, tasks of its own
that find the device), and stops, failures and rests behave as a task's did."""
import asyncio

import pytest
import uvloop

from stressgrid.plan import Address, Opts
from stressgrid.runtime.engine import Engine

NEVER_CONNECTED = Address("127.0.0.1", 9, "http", "127.0.0.1")  # HTTP connects on first request


def run_engine(script, size, until, bound_s=10):
    """Run ``size`` devices of ``script`` until ``until(counters)`` holds (a hang past
    ``bound_s`` is the failure), stop them; returns ``(counters, error lines, engine)``."""
    async def main():
        engine = Engine()
        counters = {}
        await engine.start_cohort("c", [(script, {}, size)], [NEVER_CONNECTED], Opts())
        async with asyncio.timeout(bound_s):
            while True:
                for name, value in engine.snapshot()["counters"].items():
                    counters[name] = counters.get(name, 0) + value
                if until(counters):
                    break
                await asyncio.sleep(0.005)
            await engine.stop_cohort("c")
        for name, value in engine.snapshot()["counters"].items():
            counters[name] = counters.get(name, 0) + value
        return counters, engine.error_lines, engine

    return uvloop.run(main())


def errors_of(counters):
    return {name: value for name, value in counters.items() if name.endswith("_error_count")}


def test_asyncio_timeout_works_inside_a_script():
    script = ("import asyncio\n"
              "try:\n"
              "    async with asyncio.timeout(0.005):\n"
              "        await delay(60000)\n"
              "except TimeoutError:\n"
              "    inc_counter('timed_out')\n"
              "assert asyncio.current_task().cancelling() == 0\n"
              "await delay(60000)\n")
    counters, _, engine = run_engine(script, 3, lambda c: c.get("timed_out_count", 0) >= 3)
    assert counters["timed_out_count"] == 3
    assert errors_of(counters) == {}
    assert engine.active_devices == 0


def test_tasks_a_script_makes_find_its_device():
    script = ("import asyncio\n"
              "async def part(key):\n"
              "    await delay(1)\n"
              "    inc_counter(key)\n"
              "    return device_id\n"
              "ids = await asyncio.gather(part('a'), asyncio.create_task(part('b')))\n"
              "assert ids == [device_id, device_id]\n"
              "inc_counter('passes')\n")
    counters, _, _ = run_engine(script, 2, lambda c: c.get("passes_count", 0) >= 10)
    assert errors_of(counters) == {}
    assert counters["a_count"] == counters["b_count"] >= counters["passes_count"] >= 10


def test_the_current_task_is_the_devices_and_shows_where_the_script_waits():
    script = ("import asyncio\n"
              "task = asyncio.current_task()\n"
              "assert task.get_coro().cr_frame.f_lineno == 3\n"
              "assert not task.done() and task.cancelling() == 0\n"
              "inc_counter('checked')\n"
              "await delay(60000)\n")
    counters, _, _ = run_engine(script, 1, lambda c: c.get("checked_count", 0) >= 1)
    assert counters["checked_count"] == 1 and errors_of(counters) == {}


def test_an_awaitable_that_yields_a_value_fails_the_pass_at_its_line():
    script = ("class Odd:\n"
              "    def __await__(self):\n"
              "        yield 5\n"
              "inc_counter('attempt')\n"
              "await Odd()\n")
    counters, lines, _ = run_engine(script, 1, lambda c: c.get("runtime_error_count", 0) >= 1)
    assert counters["runtime_error_count"] == 1 and counters["attempt_count"] == 1
    assert lines["runtime_error_count"].startswith("line 3: yield 5 -> RuntimeError")


def test_a_bare_yield_steps_again_on_the_next_turn():
    script = ("import asyncio\n"
              "for _ in range(3):\n"
              "    await asyncio.sleep(0)\n"
              "inc_counter('passes')\n")
    counters, _, _ = run_engine(script, 2, lambda c: c.get("passes_count", 0) >= 20)
    assert errors_of(counters) == {} and counters["passes_count"] >= 20


def test_a_script_that_cancels_itself_is_counted_and_rests():
    script = ("import asyncio\n"
              "inc_counter('attempt')\n"
              "raise asyncio.CancelledError()\n")
    counters, lines, _ = run_engine(script, 1, lambda c: c.get("device_cancelled_error_count", 0) >= 1)
    # It rests a second before its next pass; the stop came well within that second.
    assert counters["device_cancelled_error_count"] == 1 and counters["attempt_count"] == 1
    assert lines["device_cancelled_error_count"].startswith("line 3:")


@pytest.mark.parametrize("where", ["resting after a failure", "waiting", "before its first step"])
def test_a_stop_ends_a_device_wherever_it_is(where):
    script = {"resting after a failure": "inc_counter('attempt')\nraise KeyError('x')",
              "waiting": "inc_counter('attempt')\nawait delay(60000)",
              "before its first step": "inc_counter('attempt')"}[where]

    async def main():
        engine = Engine()
        await engine.start_cohort("c", [(script, {}, 50)], [NEVER_CONNECTED], Opts())
        runners = list(engine.cohorts["c"].tasks)
        if where == "before its first step":
            assert all(runner.cancel() for runner in runners)
        else:   # every device takes its first pass (and, failing, rests)
            attempts, failures = engine.recorder.counter("attempt_count"), engine.recorder.counter("key_error_count")
            failing = where == "resting after a failure"
            async with asyncio.timeout(10):
                while attempts.value < 50 or (failing and failures.value < 50):
                    await asyncio.sleep(0)
        async with asyncio.timeout(0.9):   # under the second a failed device rests
            stopped = await engine.stop_cohort("c")
        counters = engine.snapshot()["counters"]
        return stopped, engine.active_devices, runners, counters

    stopped, active, runners, counters = uvloop.run(main())
    assert stopped == 50 and active == 0
    assert all(runner.done() and runner.get_coro() is None for runner in runners)
    assert counters.get("attempt_count", 0) == (0 if where == "before its first step" else 50)
    assert all(runner.device.client is None for runner in runners)


def test_a_task_factory_already_on_the_loop_still_makes_the_tasks():
    script = ("import asyncio\n"
              "async def part():\n"
              "    inc_counter('part')\n"
              "    return device_id\n"
              "assert await asyncio.create_task(part()) == device_id\n"
              "await delay(60000)\n")
    made = []

    def factory(loop, coro, context=None):
        made.append(coro)
        return asyncio.Task(coro, loop=loop, context=context)

    async def main():
        asyncio.get_running_loop().set_task_factory(factory)
        engine = Engine()
        await engine.start_cohort("c", [(script, {}, 3)], [NEVER_CONNECTED], Opts())
        async with asyncio.timeout(10):
            while engine.recorder.counter("part_count").value < 3:
                await asyncio.sleep(0.005)
        await engine.stop_cohort("c")
        return engine.snapshot()["counters"]

    counters = uvloop.run(main())
    assert counters["part_count"] == 3 and errors_of(counters) == {}
    assert sum(1 for coro in made if getattr(coro, "__name__", "") == "part") == 3
