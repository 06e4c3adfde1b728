# GET one path over and over on a kept-alive connection, timing every request.
# Protocol: http or https (http10/http10s reconnect for each request). Params (all optional):
#   path        the path to GET (default "/")
#   iterations  GETs before the device starts over as a new one (default: no end)
#   delay_ms    pause between GETs (default 0; randomized by 5% when set)
path = params.get("path", "/")
iterations = params.get("iterations")
pause_ms = params.get("delay_ms", 0)

done = 0
while iterations is None or done < iterations:
    start_timing("get")
    status, headers, body = await get(path)
    stop_timing("get")
    # get_us is the script's view of each request; headers_us and body_us split it.
    inc_counter(f"status_{status}")
    done += 1
    if pause_ms:
        await delay(pause_ms, 0.05)
