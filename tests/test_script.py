"""Scripts are checked before any device starts, with line and column."""
import pytest

from stressgrid.plan import Plan, PlanError, ScriptError, check_script

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("source, protocol, line, column, words", [
    ("x = (", "tcp", 1, 5, "syntax error"),
    ("a = 1\n  b = 2", "tcp", 2, 2, "syntax error"),
    ("await get('/')", "tcp", 1, 7, "not available for protocol 'tcp'"),
    ("await send(b'x')", "http", 1, 7, "not available for protocol 'http'"),
    ("await ws_upgrade('/')", "http2", 1, 7, "not available"),
    ("x = 1\nget('/')", "http", 2, 1, "must be awaited"),
    ("async def f():\n    return recv()\n", "udp", 2, 12, "must be awaited"),
    ("delay(10)", "udp", 1, 1, "must be awaited"),
    ("await stop_timing('a')", "tcp", 1, 1, "must not be awaited"),
    ("yield 3", "tcp", 1, 1, "yield"),
    ("nonlocal q", "tcp", 1, 1, "nonlocal"),
    ("x = 1\nstatus, _, _ = await gett('/')", "http", 2, 22, "name 'gett' is not defined; did you mean 'get'?"),
    ("inc_counter(str(lenn(params)))", "udp", 1, 17, "did you mean 'len'?"),
    ("chek('login', True)", "tcp", 1, 1, "name 'chek' is not defined; did you mean 'check'?"),
    ("body = json.dumps({})", "http", 1, 8, "add 'import json' to the script"),
    ("for path in paths:\n    await get(path)", "http", 1, 13, "name 'paths' is not defined"),
    ("def step():\n    return counter + 1\nstep()", "tcp", 2, 12, "name 'counter' is not defined"),
])
def test_rejected_with_line_and_column(source, protocol, line, column, words):
    with pytest.raises(ScriptError) as caught:
        check_script(source, protocol)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert words in str(caught.value)


@pytest.mark.parametrize("source, protocol", [
    ("status, headers, body = await get('/')\nreturn", "http"),
    ("import asyncio\nawait asyncio.wait_for(recv(), 1)", "tcp"),
    ("def send(x):\n    return x\nsend(1)", "http"),  # the script's own send
    ("async def step():\n    await send(b'x')\n    return await recv()\nawait step()", "tcp"),
    ("frame = ws_fetch_json()\nawait ws_send_text('x')", "https"),
    ("", "udp"),
    ("# only a comment", "tcp"),
    # Names bound anywhere count as defined: the checker never rejects a script that can run.
    ("import json as j\nfor i in range(2):\n    await get(j.dumps(i))\nprint(i, device_id, params)", "http"),
    ("try:\n    await recv()\nexcept OSError as error:\n    inc_counter(type(error).__name__)", "tcp"),
    ("class Step:\n    size = 1\n    def twice(self):\n        return Step.size * 2\nStep().twice()", "udp"),
    ("match params:\n    case {'n': n, **rest}:\n        print(n, rest)", "udp"),
    ("exec('late = 1')\nprint(late)", "udp"),  # names made at run time are not guessed at
])
def test_accepted(source, protocol):
    check_script(source, protocol)


def test_every_problem_is_reported_in_line_order():
    # Found by three different checks, the undefined name last: all of them, sorted.
    source = ("status, _, _ = await gett('/')\n"     # line 1: a typo
              "await stop_timing('a')\n"             # line 2: a function that must not be awaited
              "post('/', body=b'')\n"                # line 3: an I/O call without await
              "await send(b'x')\n"                   # line 4: not a function of http
              "print(json.dumps({}))\n")             # line 5: a module not imported
    with pytest.raises(ScriptError) as caught:
        check_script(source, "http")
    problems = caught.value.problems
    assert [(p.line, p.column) for p in problems] == [(1, 22), (2, 1), (3, 1), (4, 7), (5, 7)]
    assert [p.message.split(";")[0].split(":")[0] for p in problems] == [
        "name 'gett' is not defined", "stop_timing() returns at once and must not be awaited",
        "post() must be awaited",
        "send() is not available for protocol 'http' (it has HTTP and WebSocket functions)",
        "name 'json' is not defined"]
    # The error itself is the first problem, and its text lists them all.
    assert (caught.value.line, caught.value.column) == (1, 22)
    assert str(caught.value).startswith("line 1, column 22: name 'gett'")
    assert str(caught.value).count("; line ") == 4


def test_a_problem_only_the_compiler_finds_is_reported_with_the_others():
    with pytest.raises(ScriptError) as caught:
        check_script("recv()\nnonlocal q\n", "tcp")
    assert [(p.line, p.message.split(":")[0]) for p in caught.value.problems] == [
        (1, "recv() must be awaited"), (2, "syntax error")]


def test_a_plan_error_carries_every_problem_of_the_script():
    with pytest.raises(PlanError) as caught:
        Plan.from_dict({"name": "p", "addresses": [{"host": "h", "port": 1, "protocol": "tcp"}],
                        "blocks": [{"script": "x = lenn(1)\nrecv()", "size": 1}]})
    answer = caught.value.to_dict()
    assert (answer["field"], answer["line"], answer["column"]) == ("blocks[0].script", 1, 5)
    assert [(p["line"], p["column"]) for p in answer["problems"]] == [(1, 5), (2, 1)]
    assert "did you mean 'len'?" in answer["problems"][0]["message"]


def test_plan_names_the_script_field():
    with pytest.raises(PlanError) as caught:
        Plan.from_dict({"name": "p", "addresses": [{"host": "h", "port": 1, "protocol": "tcp"}],
                        "blocks": [{"script": "await send(b'')", "size": 1},
                                   {"script": "\n\nrecv()", "size": 1}]})
    assert caught.value.field == "blocks[1].script"
    assert (caught.value.line, caught.value.column) == (3, 1)


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p.update(name=""), "name"),
    (lambda p: p.update(name=5), "name"),
    (lambda p: p["addresses"][0].update(port=0), "addresses[0].port"),
    (lambda p: p["addresses"][0].update(port="80"), "addresses[0].port"),
    (lambda p: p["addresses"][0].update(protocol="gopher"), "addresses[0].protocol"),
    (lambda p: p["addresses"][0].update(host=""), "addresses[0].host"),
    (lambda p: p.update(addresses=[]), "addresses"),
    (lambda p: p["blocks"][0].update(size=-1), "blocks[0].size"),
    (lambda p: p["blocks"][0].update(size=True), "blocks[0].size"),
    (lambda p: p["blocks"][0].update(params=[1]), "blocks[0].params"),
    (lambda p: p.update(opts={"ramp_steps": 0}), "opts.ramp_steps"),
    (lambda p: p.update(opts={"sustain_ms": -1}), "opts.sustain_ms"),
    (lambda p: p.update(opts={"bogus": 1}), "opts.bogus"),
    (lambda p: p.update(extra=1), "extra"),
])
def test_plan_errors_name_the_field(mutate, field):
    plan = {"name": "p", "addresses": [{"host": "localhost", "port": 80, "protocol": "tcp"}],
            "blocks": [{"script": "await send(b'x')", "params": {}, "size": 10}]}
    mutate(plan)
    with pytest.raises(PlanError) as caught:
        Plan.from_dict(plan)
    assert caught.value.field == field
