# One visit to the bundled demo target (python -m stressgrid.targets.demo), for an open-model
# (arrival-rate) run: the script is one iteration, started at the planned rate on a free
# device of the pool, which keeps its connection for its next iteration.
#   python -m stressgrid.cli run visits examples/demo_visit.py --local --demo-target \
#       --rate 200 --sustain 20 -s 50
# Protocol: http (or http10, http2 against a server that speaks it). Params (all optional):
#   slow_ms     when set, also GET /slow?ms=<slow_ms> (a slow backend call)
slow_ms = params.get("slow_ms")

status, _, _ = await get("/", name="index")
check("index_ok", status == 200)
status, _, document = await get("/json", name="json")
check("json_ok", status == 200 and isinstance(document, dict) and document.get("ok") is True)
if slow_ms is not None:
    await get(f"/slow?ms={slow_ms}", name="slow")
