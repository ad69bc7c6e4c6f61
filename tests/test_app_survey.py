"""Survey mode (SUR_MODE=survey): Vote and Results only, no labelled generation anywhere in the
API, the researchers' instructions on the page, and votes answered without the sides."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import pytest  # noqa: E402
from studio_server import FakePipe, serve  # noqa: E402

INSTRUCTIONS = "## Lab study 7\n\nPick the picture that shows the prompt."


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("survey")
    (tmp / "intro.md").write_text(INSTRUCTIONS, encoding="utf-8")
    demo, studio, cfg, url = serve(tmp, pipe=FakePipe(), mode="survey", survey_instructions=str(tmp / "intro.md"))
    yield studio, url
    demo.close()
    studio.store.close()


def test_only_vote_and_results(survey):
    from gradio_client import Client

    studio, url = survey
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/new_battle", "/vote", "/checks", "/results"}
    config = httpx.get(url + "config", timeout=30).json()
    tabs = [c["props"]["label"] for c in config["components"] if c["type"] == "tabitem"]
    assert tabs == ["Vote", "Results"]
    texts = [c["props"].get("value") for c in config["components"] if c["type"] == "markdown"]
    assert INSTRUCTIONS in texts
    assert "generate" not in json.dumps([d.get("api_name") for d in config["dependencies"]])
    for path in ("gradio_api/run/generate", "gradio_api/call/generate", "gradio_api/call/v2/generate",
                 "gradio_api/run/eval_report"):
        r = httpx.post(url + path, json={"data": ["two red cats", "", 1, 1, 5.0]}, timeout=30)
        assert r.status_code != 200 and "event_id" not in r.text  # no such endpoint (Gradio answers 500)


def test_a_vote_gets_a_receipt_without_the_sides(survey):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    studio, url = survey
    c = Client(url, verbose=False)
    with pytest.raises(AppError, match="this survey draws its prompts from its suites"):
        c.predict("my own prompt", api_name="/new_battle")
    left, right, prompt_md, bid = c.predict("", api_name="/new_battle")
    receipt = c.predict(bid, "left", api_name="/vote")
    assert set(receipt) == {"battle_id", "choice", "created_at"}
    assert studio.store.get_vote(bid)["winner"] in ("tiny:baseline", "tiny:sur-adapter")  # kept on the server
    assert c.predict(bid, left_action="yes", api_name="/checks")["stored"] == {"left_action": "yes"}
