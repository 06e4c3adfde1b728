# ElasticSearch over HTTP: PUT a random 64 KiB JSON document, GET it back and check it.
# Protocol: http or https, target port 9200. Params (all optional):
#   index         index name (default "stress")
#   iterations    PUT/GET pairs per connection (default 1000)
#   delay_ms      pause between pairs (default 1000, randomized by 5%)
#   source_field  where the GET response holds the document: ElasticSearch wraps it
#                 as {"_source": doc, ...} (the default, "_source"); "" means the
#                 response is the document itself, as a plain document store
#                 (for instance a WebDAV server) returns it.
import base64

index = params.get("index", "stress")
iterations = params.get("iterations", 1000)
pause_ms = params.get("delay_ms", 1000)
source_field = params.get("source_field", "_source")

for _ in range(iterations):
    # 24 random bits: a key space of 16,777,216 keys
    key = base64.urlsafe_b64encode(random_bits(24)).decode().rstrip("=")
    resource = f"/{index}/_doc/{key}"
    # 49,152 random bytes are 65,536 characters of base64
    doc = {"value": base64.b64encode(random_bytes(49152)).decode()}

    start_timing("put")
    status, _, _ = await put(resource, json=doc)
    # ElasticSearch answers 201 (created) or 200 (replaced); a document store may say 204.
    assert status in (200, 201, 204), status
    inc_counter(f"put_status_{status}")

    stop_start_timing("put", "get")
    status, _, found = await get(resource)
    assert status == 200, status
    assert (found[source_field] if source_field else found) == doc
    stop_timing("get")

    await delay(pause_ms, 0.05)
