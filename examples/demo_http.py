# Browse the bundled demo target (python -m stressgrid.demo_target): the greeting page, then
# the JSON document, with a pause between visits like a person reading.
# Protocol: http (or http10, http2 against a server that speaks it). Params (all optional):
#   delay_ms    pause between visits (default 100; randomized by 10%)
#   slow_ms     when set, also GET /slow?ms=<slow_ms> on each visit (a slow backend call)
pause_ms = params.get("delay_ms", 100)
slow_ms = params.get("slow_ms")

while True:
    start_timing("index")
    status, _, _ = await get("/")
    stop_start_timing("index", "json")
    inc_counter(f"index_{status}")
    status, _, document = await get("/json")
    stop_timing("json")
    inc_counter(f"json_{status}")
    # The JSON body arrives decoded; a wrong answer ends this device as an assertion_error.
    assert status == 200 and document["ok"], f"unexpected /json answer {status}"
    if slow_ms is not None:
        start_timing("slow")
        await get(f"/slow?ms={slow_ms}")
        stop_timing("slow")
    await delay(pause_ms, 0.1)
