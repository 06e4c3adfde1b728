# Shoppers of the bundled demo target (python -m stressgrid.targets.demo), each one user from a
# feeder file: run it with `--data examples/shop_users.csv`, and device i of the whole fleet is
# row i of the file (every row is used once before any is used again). Each shopper signs in
# with its own name (the demo target echoes the body back, so the check sees whether the answer
# was really for this user), browses the catalog and waits like a person reading.
# Protocol: http. Params (all optional):
#   delay_ms    pause between visits (default 500; randomized by 10%)
pause_ms = params.get("delay_ms", 500)
user = row["user"]

status, _, answer = await post("/echo", json={"user": user, "tier": row["tier"]}, name="sign_in")
check("signed_in_as_self", status == 200 and isinstance(answer, dict) and answer.get("user") == user)
while True:
    status, _, catalog = await get("/json", name="catalog")
    check("catalog_ok", status == 200 and isinstance(catalog, dict))
    await delay(pause_ms, 0.1)
