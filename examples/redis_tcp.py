# Redis over raw TCP: SET then GET a random key, timing each, on one connection.
# Protocol: tcp, target port 6379. Params (all optional):
#   iterations  SET/GET pairs per connection (default 1000)
#   delay_ms    pause between pairs (default 1000, randomized by 5%)
import base64

iterations = params.get("iterations", 1000)
pause_ms = params.get("delay_ms", 1000)

for _ in range(iterations):
    # 16 random bits: a key space of 65,536 keys
    key = base64.b64encode(random_bits(16)).decode().rstrip("=")
    # 768 random bytes are 1,024 characters of base64
    value = base64.b64encode(random_bytes(768)).decode()

    start_timing("set")
    await send(f"SET {key} {value}\r\n")
    reply = await recv()
    assert reply == b"+OK\r\n", reply

    stop_start_timing("set", "get")
    await send(f"GET {key}\r\n")
    reply = b""
    # A bulk reply may arrive in several segments: read until it is whole.
    while not reply.endswith(b"\r\n") or reply.count(b"\r\n") < 2:
        reply += await recv()
    header, data, rest = reply.split(b"\r\n", 2)
    assert header == b"$1024" and len(data) == 1024 and rest == b"", reply[:40]
    stop_timing("get")

    await delay(pause_ms, 0.05)
