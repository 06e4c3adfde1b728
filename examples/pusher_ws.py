# Pusher over WebSocket: subscribe to a private channel and trigger client events on it,
# counting the events this device triggers and the ones it gets from other devices.
# Protocol: http or https (the WebSocket upgrade goes over HTTP/1.1). Params (all optional):
#   app_key       Pusher application key (default "app_key")
#   secret        its secret, signs the private channel subscription (default "secret")
#   channel_bits  random bits of the channel name: 2 ** bits channels (default 6 = 64)
#   iterations    events each device triggers (default 1000)
#   delay_ms      pause between events (default 1000, randomized by 5%)
import base64
import hashlib
import hmac
import json

app_key = params.get("app_key", "app_key")
secret = params.get("secret", "secret")
channel_bits = params.get("channel_bits", 6)
iterations = params.get("iterations", 1000)
pause_ms = params.get("delay_ms", 1000)

channel = "private-stress-" + base64.urlsafe_b64encode(random_bits(channel_bits)).decode().rstrip("=")
event = "client-stress"

# Upgrade the HTTP connection to WebSocket
status, _, body = await ws_upgrade(f"/app/{app_key}?protocol=7")
assert status == 101, (status, body)

# The server greets with pusher:connection_established and our socket id
message = await ws_receive_json()
assert message["event"] == "pusher:connection_established", message
socket_id = json.loads(message["data"])["socket_id"]

# A private channel needs an HMAC-SHA256 signature of "<socket id>:<channel>"
signature = hmac.new(secret.encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256).hexdigest()
await ws_send_json({"event": "pusher:subscribe",
                    "data": {"auth": f"{app_key}:{signature}", "channel": channel}})

message = await ws_receive_json()
assert message.get("event") == "pusher_internal:subscription_succeeded", message
assert message.get("channel") == channel, message

for _ in range(iterations):
    # 768 random bytes are 1,024 characters of base64
    data = base64.b64encode(random_bytes(768)).decode()
    await ws_send_json({"event": event, "channel": channel, "data": data})
    inc_counter("trigger")

    # Take what other devices triggered on our channel, without waiting
    while (message := ws_fetch_json()) is not None:
        if message.get("event") == event and message.get("channel") == channel:
            inc_counter("consume")

    await delay(pause_ms, 0.05)
