"""Votes are answered outside the generation queue: with the queue full of generations (a slow
stand-in pipeline, SUR_QUEUE_MAX=3), a vote from the page (its plain POST to /run/predict, as
Gradio's front end sends queue=False events) and from the API (/run/vote, /run/checks) is stored
and answered, while new generations are refused with "Queue is full".

Latency is measured in bench/bench_app.py (vote round trip with the queue full); here only what
must hold.
"""

import json
import os
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import pytest  # noqa: E402
from studio_server import FakePipe, add_pairs, serve  # noqa: E402

from surlib.studio.identity import voter_key  # noqa: E402

QUEUE_MAX = 3


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    demo, studio, cfg, url = serve(tmp_path_factory.mktemp("queue"), pipe=FakePipe(delay_s=1.5),
                                   queue_max_size=QUEUE_MAX, pairs_per_minute=1000, votes_per_minute=1000)
    yield studio, cfg, url.rstrip("/")
    demo.close()
    studio.store.close()


def _page_vote_route(url, elem_id):
    """(fn_index, trigger id) of the page's event bound to the button `elem_id`."""
    config = httpx.get(f"{url}/config", timeout=30).json()
    comp = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    dep = next(d for d in config["dependencies"] if any(t[0] == comp for t in d["targets"]))
    assert dep["queue"] is False
    return dep["id"], comp


def test_votes_are_answered_while_the_generation_queue_is_full(busy):
    from gradio_client import Client
    from gradio_client.utils import QueueError

    studio, cfg, url = busy
    first, second, third = add_pairs(studio, voter_key("ip:127.0.0.1", cfg.salt()), 3)
    fn_index, trigger = _page_vote_route(url, "vote-left")
    client = Client(url + "/", verbose=False)
    refused, done = [], []

    def generate():
        try:
            client.predict("", api_name="/new_battle")
            done.append(1)
        except QueueError:
            refused.append(1)
        except Exception as e:  # noqa: BLE001 - reported below
            refused.append(repr(e))

    threads = [threading.Thread(target=generate) for _ in range(QUEUE_MAX + 6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/gradio_api/queue/status", timeout=10).json()["queue_size"] < QUEUE_MAX:
        assert time.monotonic() < deadline, "the queue never filled"
        time.sleep(0.05)

    # the page's own vote request (what a click on "Left is better" sends)
    page = httpx.post(f"{url}/gradio_api/run/predict", timeout=30, json={
        "data": [first], "fn_index": fn_index, "trigger_id": trigger, "session_hash": "page-1", "event_data": None})
    api = httpx.post(f"{url}/gradio_api/run/vote", json={"data": [second, "right"]}, timeout=30)
    checks = httpx.post(f"{url}/gradio_api/run/checks", timeout=30,
                        json={"data": [second, "yes", None, None, None, "no", None]})
    still_full = httpx.get(f"{url}/gradio_api/queue/status", timeout=10).json()["queue_size"]
    for t in threads:
        t.join(timeout=120)

    assert page.status_code == 200 and "vote stored" in json.dumps(page.json()["data"][0])
    assert api.status_code == 200 and api.json()["data"][0]["choice"] == "right"
    assert checks.status_code == 200 and checks.json()["data"][0]["stored"] == {"left_count": "yes", "right_color": "no"}
    assert still_full >= QUEUE_MAX - 1  # the votes went past a queue that was (still) full
    assert studio.store.get_vote(first)["choice"] == "left" and studio.store.get_vote(second)["choice"] == "right"
    assert refused and all(r == 1 for r in refused)  # generations beyond the queue: "Queue is full"
    assert done  # and the queued ones were served
    assert studio.store.get_vote(third) is None


def test_generation_cannot_skip_the_queue_over_plain_http(busy):
    _, _, url = busy
    r = httpx.post(f"{url}/gradio_api/run/new_battle", json={"data": [""]}, timeout=30)
    assert r.status_code == 404 and "Please join the queue" in r.text  # api_open=False
