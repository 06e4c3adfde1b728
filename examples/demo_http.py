# Browse the bundled demo target (python -m stressgrid.targets.demo): the greeting page, then
# the JSON document, with a pause between visits like a person reading. Each request is named,
# so the summary has a row for each page, and each answer is checked.
# Protocol: http (or http10, http2 against a server that speaks it). Params (all optional):
#   delay_ms    pause between visits (default 100; randomized by 10%)
#   slow_ms     when set, also GET /slow?ms=<slow_ms> on each visit (a slow backend call)
pause_ms = params.get("delay_ms", 100)
slow_ms = params.get("slow_ms")

while True:
    status, _, _ = await get("/", name="index")
    check("index_ok", status == 200)
    status, _, document = await get("/json", name="json")
    # The JSON body arrives decoded. check() counts a wrong answer and the device goes on
    # (an assert would end it as an assertion_error and start it again a second later).
    check("json_ok", status == 200 and isinstance(document, dict) and document.get("ok") is True)
    if slow_ms is not None:
        await get(f"/slow?ms={slow_ms}", name="slow")
    await delay(pause_ms, 0.1)
