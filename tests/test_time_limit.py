"""The connect time limit of TCP and HTTP/2 devices: a stop always stops the device."""
import asyncio

import pytest
import uvloop

from stressgrid.protocols.waiting import _TimeLimit, time_limit

pytestmark = pytest.mark.unit

LIMITS = [pytest.param(time_limit, id="time_limit"), pytest.param(_TimeLimit, id="python-3.10")]


def run(coroutine):
    return uvloop.run(coroutine)


@pytest.mark.parametrize("limit", LIMITS)
def test_an_operation_over_its_limit_raises_timeout_error(limit):
    async def main():
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with limit(0.05):
                await loop.create_future()  # never completes
        return loop.time() - started

    # The loop's timers round to its clock resolution (a millisecond in uvloop), so the limit
    # may end a hair before 50 ms: what matters is that it waited rather than failing at once.
    assert run(main()) >= 0.04


@pytest.mark.parametrize("limit", LIMITS)
def test_a_result_within_the_limit_is_returned(limit):
    async def main():
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, "connected")
        async with limit(5):
            return await future

    assert run(main()) == "connected"


@pytest.mark.parametrize("limit", LIMITS)
def test_a_stop_in_the_instant_the_operation_completes_still_stops(limit):
    """asyncio.wait_for returned the result here (Python 3.11 and older) and the device
    ran on after its cohort was stopped."""
    async def main():
        loop = asyncio.get_running_loop()
        connection = loop.create_future()
        after = []

        async def device():
            async with limit(5):
                await connection
            after.append("ran on after the stop")
            await loop.create_future()

        task = loop.create_task(device())
        await asyncio.sleep(0)  # the device now waits for its connection
        connection.set_result(None)  # the connection completes...
        task.cancel()  # ...in the same instant as the stop
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task
        return after

    assert run(main()) == []

