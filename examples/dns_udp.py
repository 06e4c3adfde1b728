# DNS over UDP: resolve one name (A record) over and over, timing each lookup.
# Protocol: udp, target port 53. Params (all optional):
#   name        the name to resolve (default "stressgrid.test")
#   iterations  queries per device (default 65536, the whole ID space)
#   delay_ms    pause between queries (default 1000, randomized by 5%)
import ipaddress
import struct

name = params.get("name", "stressgrid.test")
iterations = params.get("iterations", 0x10000)
pause_ms = params.get("delay_ms", 1000)

qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
question = qname + struct.pack("!HH", 1, 1)  # QTYPE A, QCLASS IN

for query_id in range(iterations):
    query_id &= 0xFFFF
    # ID, flags (recursion desired), 1 question, no answer/authority/additional records
    request = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question

    start_timing("resolve")
    await send(request)
    response = await recv()
    stop_timing("resolve")

    reply_id, flags, questions, answers, _, _ = struct.unpack_from("!HHHHHH", response)
    # A response (QR set) with no error (RCODE 0); AA may be set by an authoritative server
    assert reply_id == query_id and flags & 0x800F == 0x8000 and questions == 1, (reply_id, hex(flags))
    assert response[12:12 + len(question)] == question

    offset = 12 + len(question)
    for _ in range(answers):
        # A compressed name pointing at the question, type A, class IN, TTL, 4-byte address
        pointer, rtype, rclass, _ttl, length = struct.unpack_from("!HHHIH", response, offset)
        assert (pointer, rtype, rclass, length) == (0xC00C, 1, 1, 4)
        address = ipaddress.IPv4Address(response[offset + 12:offset + 16])
        offset += 16
    inc_counter("resolved")

    await delay(pause_ms, 0.05)
