"""The app through its public API (gradio_client), served on localhost in this process (tiny preset)."""

import base64
import io
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from conftest import launch_test_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENDPOINTS = {"/generate", "/random_seed", "/new_battle", "/vote", "/checks", "/results", "/eval_report"}


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    demo, studio, cfg = launch_test_app(tmp_path_factory.mktemp("app_api"), [
        {"id": "toy-1", "simple": "two red cats", "category": "count"},
        {"id": "toy-2", "simple": "a blue robot", "prompt": "blue robot, masterpiece", "category": "color"},
    ], votes_per_minute=5, trusted_proxies="127.0.0.1")  # clients may speak for other addresses (XFF)
    yield SimpleNamespace(url=f"http://127.0.0.1:{cfg.server_port}/", studio=studio, cfg=cfg)
    demo.close()
    studio.store.close()


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def _error(client, *args, api_name):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


def _pixels(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB").tobytes(), im.size


def _png_size(plot):
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(plot["plot"].split(",", 1)[1]))) as im:
        return im.size


def _figure_size(summary):
    from surlib.studio.results import summary_figure

    fig = summary_figure(summary)
    return tuple(int(round(v)) for v in fig.get_size_inches() * fig.dpi)


def test_api_surface_is_exactly_the_public_endpoints(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == ENDPOINTS
    assert not api["unnamed_endpoints"]
    vote_params = [p["parameter_name"] for p in api["named_endpoints"]["/vote"]["parameters"]]
    assert vote_params == ["battle_id", "choice"]  # the side is never an input


def test_generate_returns_one_paired_generation(client):
    base, ada, slider, timing, spell, spell_note = client.predict("two red cats", "", 3, 1, 5.0, api_name="/generate")
    (b_px, b_size), (a_px, a_size) = _pixels(base), _pixels(ada)
    assert b_size == a_size == (64, 64) and b_px != a_px
    assert [_pixels(p)[0] for p in slider] == [b_px, a_px]
    assert "Generated both images in" in timing and "seed 3" in timing
    assert spell is None and spell_note.startswith("No spell: this prompt is not in a suite")
    again = client.predict("two red cats", "", 3, 1, 5.0, api_name="/generate")
    assert _pixels(again[1])[0] == a_px  # same seed, same images


def test_generate_eta_and_spell(app_server, client):
    """eta (the 6th input, default the adapter's own) 0 gives the baseline; a suite row's spell adds
    the base model given the spell, from the same batch and noise."""
    eta = app_server.studio.default_eta
    default = client.predict("two red cats", "", 3, 1, 5.0, api_name="/generate")
    same = client.predict("two red cats", "", 3, 1, 5.0, eta, api_name="/generate")
    assert _pixels(same[1])[0] == _pixels(default[1])[0] and f"adapter strength eta {eta:g}" in same[3]
    base, ada, _, timing, _, _ = client.predict("two red cats", "", 3, 1, 5.0, 0, api_name="/generate")
    assert _pixels(base)[0] == _pixels(ada)[0] and "adapter strength eta 0)" in timing
    base, _, _, timing, spell, note = client.predict("a blue robot", "", 3, 1, 5.0, api_name="/generate")
    assert _pixels(spell)[1] == (64, 64) and _pixels(spell)[0] != _pixels(base)[0]
    assert "Generated all three images" in timing and "`blue robot, masterpiece`" in note
    for bad in (1.5, -1, "strong"):
        assert f"eta must be a number between 0 and 1, got {bad!r}" in _error(
            client, "two red cats", "", 3, 1, 5.0, bad, api_name="/generate")


@pytest.mark.parametrize("args,message", [
    (("", "", 1, 2, 5.0), "prompt must be a non-empty string"),
    (("x" * 501, "", 1, 2, 5.0), "at most 500"),
    (("cat", "n" * 1001, 1, 2, 5.0), "negative prompt"),
    (("cat", "", "abc", 2, 5.0), "seed must be an integer"),
    (("cat", "", 2.5, 2, 5.0), "seed must be an integer"),
    (("cat", "", 2**40, 2, 5.0), "seed must be an integer"),
    (("cat", "", None, 2, 5.0), "seed is empty"),
    (("cat", "", 1, 0, 5.0), "steps must be an integer"),
    (("cat", "", 1, "ten", 5.0), "steps must be an integer"),
    (("cat", "", 1, 51, 5.0), "between 1 and 50 on this server"),
    (("cat", "", 1, 2, "strong"), "guidance must be a number"),
    (("cat", "", 1, 2, 1000), "guidance must be a number"),
])
def test_generate_bad_input_is_a_clear_error(client, args, message):
    assert message in _error(client, *args, api_name="/generate")


def test_app_stays_up_after_errors(client):
    _error(client, "", "", 1, 2, 5.0, api_name="/generate")
    seed = client.predict(api_name="/random_seed")
    assert isinstance(seed, (int, float)) and 0 <= seed < 2**31
    assert client.predict("cat", "", 1, 1, 5.0, api_name="/generate")[3]


def _as(app_server, address):
    """A client that the server (trusting 127.0.0.1 as its proxy) sees at `address`."""
    from gradio_client import Client

    return Client(app_server.url, verbose=False, headers={"X-Forwarded-For": address})


def test_blind_vote_flow(app_server, client):
    from surlib.studio.identity import voter_key

    store = app_server.studio.store
    before = store.vote_count()
    left, right, prompt_md, battle_id = client.predict("", api_name="/new_battle")
    # nothing that comes back before the vote names a side or the seed
    assert "adapter" not in prompt_md.lower() and "baseline" not in prompt_md.lower()
    assert "seed" not in prompt_md.lower() and len(battle_id) >= 24
    battle = store.get_battle(battle_id)
    assert battle.adapter_side in ("left", "right") and battle.prompt in prompt_md
    assert battle.prompt_id in ("toy-1", "toy-2") and battle.category in ("count", "color")
    assert store.get_vote(battle_id) is None

    # another voter (another address) cannot vote on this pair
    other = _as(app_server, "203.0.113.50")
    assert "shown to another voter" in _error(other, battle_id, "left", api_name="/vote")

    reveal = client.predict(battle_id, "left", api_name="/vote")
    assert reveal["adapter_side"] == battle.adapter_side and reveal["seed"] == battle.seed
    assert reveal["winner"] == battle.left_system
    row = store.get_vote(battle_id)
    assert store.vote_count() == before + 1
    assert row["choice"] == "left" and row["adapter_side"] == battle.adapter_side
    assert row["session"] == voter_key("ip:127.0.0.1", app_server.cfg.salt())  # the address, not the session
    assert client.session_hash not in row["session"] and len(row["session"]) == 64
    assert row["base_model"] and row["adapter_id"] and row["prompt"] == battle.prompt
    assert row["time_to_vote_s"] >= 0 and row["ts"] > 0 and row["category"] == battle.category

    # the images were served in the stored order: regenerate and compare
    steps, guidance = app_server.studio.default_steps, app_server.studio.default_guidance
    _, adapter_img, *_ = client.predict(battle.prompt, "", battle.seed, steps, guidance, api_name="/generate")
    shown_adapter = left if battle.adapter_side == "left" else right
    shown_baseline = right if battle.adapter_side == "left" else left
    assert _pixels(shown_adapter)[0] == _pixels(adapter_img)[0]
    assert _pixels(shown_baseline)[0] != _pixels(adapter_img)[0]

    assert "already has your vote" in _error(client, battle_id, "right", api_name="/vote")
    assert "unknown pair id" in _error(client, "x" * 24, "left", api_name="/vote")
    assert "battle_id is missing or empty" in _error(client, "", "left", api_name="/vote")
    _, _, _, second = client.predict("my own words", api_name="/new_battle")
    assert "choice must be one of" in _error(client, second, "centre", api_name="/vote")
    assert client.predict(second, "both_bad", api_name="/vote")["choice"] == "both_bad"
    assert store.get_battle(second).prompt == "my own words" and store.vote_count() == before + 2
    assert "at most 500" in _error(client, "w" * 600, api_name="/new_battle")


def test_vote_rate_limit_per_voter(app_server):
    from surlib.studio.identity import voter_key
    from surlib.studio.votes import Battle, new_battle_id

    studio = app_server.studio
    voter = _as(app_server, "198.51.100.61")
    session = voter_key("ip:198.51.100.61", app_server.cfg.salt())
    ids = []
    for _ in range(app_server.cfg.votes_per_minute + 1):
        b = Battle(battle_id=new_battle_id(), created_at=time.time(), session=session, prompt="p", seed=1,
                   left_system="tiny:baseline", right_system="tiny:sur-adapter", adapter_side="right",
                   preset="tiny")
        studio.store.add_battle(b)
        ids.append(b.battle_id)
    for bid in ids[:-1]:
        voter.predict(bid, "tie", api_name="/vote")
    assert "too many votes" in _error(voter, ids[-1], "tie", api_name="/vote")
    assert "too many votes" in _error(_as(app_server, "198.51.100.61"), ids[-1], "tie", api_name="/vote")


def test_results_endpoint(app_server, client):
    summary, plot, table, csv_path, numbers, checks = client.predict("tiny", api_name="/results")
    n = app_server.studio.store.vote_count("tiny")
    assert n >= 2 and numbers["total_votes"] == n
    assert "win rate" in summary and "Wilson" in summary
    assert len(Path(csv_path).read_text().strip().splitlines()) == n + 1
    assert table["headers"][0] == "category" and table["data"]
    # the plot follows the votes: the suite votes carry categories, so a per-category panel
    # widens it; with no votes there is the outcome panel alone
    assert plot["type"] == "matplotlib"
    assert _png_size(plot) == _figure_size(app_server.studio.results("tiny")) and _png_size(plot)[0] > 1000
    empty_plot = client.predict("sd21", api_name="/results")[1]
    assert _png_size(empty_plot) == _figure_size(app_server.studio.results("sd21")) and _png_size(empty_plot)[0] < 700
    everything = client.predict("all", api_name="/results")[4]
    assert everything["total_votes"] == app_server.studio.store.vote_count()
    assert "No votes yet" in client.predict("sd21", api_name="/results")[0]
    assert checks["headers"][:2] == ["attribute", "variant"] and numbers["your_votes_all"] >= 2
    assert "decisive votes needed" in summary and "**Your votes:**" in summary


def test_eval_report_endpoint(app_server, client):
    text, figures = client.predict(api_name="/eval_report")  # a fresh install: the shipped report
    assert text.startswith("*The shipped report") and "python -m eval.run" in text and len(figures) == 2
    from PIL import Image

    run = app_server.cfg.runs_dir / "toy"
    run.mkdir(parents=True)
    Image.new("RGB", (20, 10), (0, 128, 0)).save(run / "win_rate.png")
    (run / "report.md").write_text("# Toy eval\n\nCounting accuracy 0.91\n\n![win rate](win_rate.png)\n")
    text, figures = client.predict(api_name="/eval_report")
    assert "Counting accuracy 0.91" in text and "figure: win rate" in text
    assert len(figures) == 1 and figures[0]["caption"] == "win_rate.png"
