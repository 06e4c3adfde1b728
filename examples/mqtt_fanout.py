# MQTT fan-out latency: the devices form groups of `group_size`; in each, the first device
# publishes a timestamped message on the group's topic every `period_ms`, and the others,
# subscribed to that topic, record how long each message took from its publish to their
# receipt (histogram fanout_us, with fanout_sent_count and fanout_received_count).
# Protocol: mqtt or mqtts. The timestamp is the publishing generator's clock: run the plan
# on one generator, or on hosts whose clocks agree to well under the latencies measured.
# A group's devices are consecutive (device ids "<cohort>-<n>"): ramp up fast enough for a
# group to have subscribed within `start_ms` of its publisher's start.
# Params (all optional):
#   group_size  devices per topic: a publisher and group_size - 1 subscribers (default 10)
#   period_ms   between a publisher's messages (default 1000)
#   messages    messages per publisher before its device ends (default 600)
#   start_ms    the publisher's wait for its subscribers (default 2000)
#   qos         of the publishes and the subscriptions (default 1)
import time

group_size = params.get("group_size", 10)
period_ms = params.get("period_ms", 1000)
messages = params.get("messages", 600)
start_ms = params.get("start_ms", 2000)
qos = params.get("qos", 1)

cohort, number = device_id.rsplit("-", 1)
group, member = divmod(int(number), group_size)
topic = f"fanout/{cohort}/{group}"

await mqtt_connect(keepalive=60)
if member == 0:
    await delay(start_ms)
    for sequence in range(messages):
        await pace(period_ms)
        # The send time (ns since the epoch) and the message's number in its group
        await publish(topic, f"{time.time_ns()} {sequence}", qos=qos)
        inc_counter("fanout_sent")
else:
    await subscribe(topic, qos=qos)
    # A message is late past this: its publisher's next one is due a period later, or, between
    # two of its passes, start_ms after it connected again.
    wait_ms = max(5000, start_ms + 3 * period_ms)
    for _ in range(messages):
        message = await mqtt_receive(timeout=wait_ms)
        sent_ns = int(message.payload.split()[0])
        record_timing("fanout", (time.time_ns() - sent_ns) // 1000)
        inc_counter("fanout_received")
await mqtt_disconnect()
