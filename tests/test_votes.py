"""Vote store, blind-pair bookkeeping (Studio with a stand-in pipeline), suites, report, export, config."""

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from surlib.pipeline import Generation
from surlib.studio.markdown import md_escape
from surlib.studio.prompts import BUILTIN_PROMPTS, example_prompts, load_suites, vote_pool
from surlib.studio.report import NO_REPORT, latest_report, report_page
from surlib.studio.settings import AppConfig, ConfigError, default_data_dir
from surlib.studio.studio import Studio
from surlib.studio.sync import VoteExporter, start_sync
from surlib.studio.votes import (
    AlreadyVoted,
    BadChoice,
    Battle,
    BattleExpired,
    RateLimited,
    UnknownBattle,
    VoteStore,
    WrongSession,
    check_choice,
    hash_session,
    new_battle_id,
)


def _battle(session="s1", side="left", created_at=None, **kw):
    left, right = ("m:sur-adapter", "m:baseline") if side == "left" else ("m:baseline", "m:sur-adapter")
    return Battle(battle_id=new_battle_id(), created_at=time.time() if created_at is None else created_at,
                  session=session, prompt="two red cats", seed=7, left_system=left, right_system=right,
                  adapter_side=side, prompt_id="toy:1", suite="toy", category="count", steps=4,
                  guidance=5.0, preset="m", base_model="base", adapter_id="ada", **kw)


@pytest.fixture
def store(tmp_path):
    s = VoteStore(tmp_path / "votes.sqlite")
    yield s
    s.close()


# ----------------------------------------------------------------------------- the store
def test_schema_wal_and_sync(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"battles", "votes"} <= tables
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL (WAL)
    full = VoteStore(store.path, synchronous="FULL")
    assert full._conn().execute("PRAGMA synchronous").fetchone()[0] == 2
    full.close()
    conn.close()


def test_vote_round_trip_keeps_everything(store):
    b = store.add_battle(_battle(side="right", created_at=time.time() - 3.0))
    v = store.record_vote(b.battle_id, "right", "s1")
    assert v["id"] == 1 and v["adapter_side"] == "right" and v["winner"] == "m:sur-adapter"
    assert 2.5 < v["time_to_vote_s"] < 60
    row = store.get_vote(b.battle_id)
    for key in ("prompt", "prompt_id", "category", "seed", "base_model", "adapter_id", "adapter_side",
                "choice", "session", "ts", "created_at", "time_to_vote_s", "left_system", "right_system"):
        assert row[key] == v[key], key
    assert row["created_at"].endswith("+00:00")
    assert store.vote_count() == 1 and store.vote_count("m") == 1 and store.vote_count("other") == 0
    assert store.presets() == ["m"]


@pytest.mark.parametrize("choice,winner", [("left", "m:sur-adapter"), ("right", "m:baseline"),
                                           ("tie", "tie"), ("both_bad", "both_bad")])
def test_choices(store, choice, winner):
    b = store.add_battle(_battle())
    assert store.record_vote(b.battle_id, choice, "s1")["winner"] == winner


def test_one_vote_per_pair(store):
    b = store.add_battle(_battle())
    store.record_vote(b.battle_id, "left", "s1")
    with pytest.raises(AlreadyVoted, match="one vote per pair"):
        store.record_vote(b.battle_id, "right", "s1")
    assert store.vote_count() == 1 and store.get_vote(b.battle_id)["choice"] == "left"
    # the UNIQUE constraint holds even if the check were bypassed
    with pytest.raises(sqlite3.IntegrityError):
        store._conn().execute("INSERT INTO votes (battle_id, ts, created_at, session, prompt, seed, left_system,"
                              " right_system, choice, winner) SELECT battle_id, 0, '', session, prompt, seed,"
                              " left_system, right_system, 'tie', 'tie' FROM battles")


def test_refusals_name_the_problem(store):
    b = store.add_battle(_battle())
    with pytest.raises(UnknownBattle, match="unknown pair"):
        store.record_vote(new_battle_id(), "left", "s1")
    with pytest.raises(UnknownBattle, match="unknown pair"):
        store.record_vote("'; DROP TABLE votes; --", "left", "s1")
    with pytest.raises(UnknownBattle):
        store.record_vote(None, "left", "s1")
    with pytest.raises(BadChoice, match="choice must be one of"):
        store.record_vote(b.battle_id, "middle", "s1")
    with pytest.raises(WrongSession, match="another session"):
        store.record_vote(b.battle_id, "left", "s2")
    old = store.add_battle(_battle(created_at=time.time() - 2 * 86400))
    with pytest.raises(BattleExpired, match="expired"):
        store.record_vote(old.battle_id, "left", "s1")
    assert store.vote_count() == 0
    assert store.get_battle(b.battle_id).adapter_side == "left"  # nothing was changed


def test_rate_limits_per_minute_and_day(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite", votes_per_minute=3, votes_per_day=5)
    t0 = time.time()
    battles = [store.add_battle(_battle(created_at=t0)) for _ in range(7)]
    for i in range(3):
        store.record_vote(battles[i].battle_id, "tie", "s1", now=t0 + i)
    with pytest.raises(RateLimited, match="3 per minute"):
        store.record_vote(battles[3].battle_id, "tie", "s1", now=t0 + 3)
    other = store.add_battle(_battle(session="s2", created_at=t0))
    store.record_vote(other.battle_id, "tie", "s2", now=t0 + 3)  # limits are per session
    store.record_vote(battles[3].battle_id, "tie", "s1", now=t0 + 61)
    store.record_vote(battles[4].battle_id, "tie", "s1", now=t0 + 62)
    with pytest.raises(RateLimited, match="5 votes per 24 hours"):
        store.record_vote(battles[5].battle_id, "tie", "s1", now=t0 + 200)
    assert store.vote_count() == 6
    store.close()


def test_threads_share_a_store(store):
    battles = [store.add_battle(_battle(session=f"s{i % 4}")) for i in range(80)]
    errors = []

    def worker(k):
        try:
            for b in battles[k::4]:
                store.record_vote(b.battle_id, "left", b.session)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and store.vote_count() == 80


def test_session_hash_is_salted_sha256():
    h = hash_session("abc", "salt")
    assert h == hashlib.sha256(b"salt:abc").hexdigest() and "abc" not in h
    assert hash_session("abc", "other") != h and hash_session(None, "salt") == hash_session("anonymous", "salt")


def test_only_the_four_choices_are_accepted(store):
    assert [check_choice(c) for c in ("left", "right", "tie", "both_bad")] == ["left", "right", "tie", "both_bad"]
    b = store.add_battle(_battle())
    for other in ("LEFT", "both-bad", "Both bad", "a", " left", None, 1):
        with pytest.raises(BadChoice, match="choice must be one of left, right, tie, both_bad"):
            store.record_vote(b.battle_id, other, "s1")
    assert store.vote_count() == 0


def test_csv_export(store, tmp_path):
    for side in ("left", "right"):
        b = store.add_battle(_battle(side=side))
        store.record_vote(b.battle_id, "left", "s1")
    path = store.export_csv(tmp_path / "out" / "votes.csv")
    import csv

    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 2 and rows[0]["adapter_side"] == "left" and rows[1]["winner"] == "m:baseline"


# ----------------------------------------------------------------------------- the studio
class FakePipe:
    """Stands in for SURPipeline: baseline is all red, adapter all blue; remembers calls."""

    def __init__(self):
        self.calls = []

    def generate_pair(self, prompt, seed=0, steps=25, guidance=7.5, negative_prompt=None):
        self.calls.append((prompt, seed, steps, guidance, negative_prompt))
        return Generation(images={"baseline": Image.new("RGB", (8, 8), (255, 0, 0)),
                                  "adapter": Image.new("RGB", (8, 8), (0, 0, 255))},
                          prompt=prompt, seed=seed, steps=steps, guidance=guidance,
                          negative_prompt=negative_prompt, timings={"total_s": 0.01})

    def set_progress_bar_config(self, **kw):
        pass


def _config(tmp_path, **kw):
    kw.setdefault("suites_dir", tmp_path / "no-suites")
    return AppConfig(preset="tiny", data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                     session_salt="test-salt", **kw)


@pytest.fixture
def studio(tmp_path):
    cfg = _config(tmp_path)
    pipe = FakePipe()
    s = Studio.from_config(cfg, pipe=pipe)
    s.fake = pipe
    yield s
    s.store.close()


def test_studio_compare_validates(studio):
    gen = studio.compare("two cats", "", 3, 2, 4.0)
    assert gen.images["baseline"].getpixel((0, 0)) == (255, 0, 0)
    assert studio.fake.calls[-1] == ("two cats", 3, 2, 4.0, None)
    gen.timings["wall_s"] = 1.2345
    assert studio.timing_markdown(gen) == ("Generated both images in **1.23 s** (one batched pass, seed 3, "
                                           "2 steps, guidance 4).")
    gen.nsfw = {"baseline": False, "adapter": True}
    assert studio.timing_markdown(gen).endswith(" The safety checker blanked: adapter.")
    for args, msg in [(("", None, 1, 2, 4.0), "prompt"), (("x" * 501, None, 1, 2, 4.0), "at most 500"),
                      (("a", None, "abc", 2, 4.0), "seed"), (("a", None, -1, 2, 4.0), "seed"),
                      (("a", None, None, 2, 4.0), "seed"), (("a", None, 1.5, 2, 4.0), "seed"),
                      (("a", None, 1, 0, 4.0), "steps"), (("a", None, 1, 51, 4.0), "steps"),
                      (("a", None, 1, 2, "x"), "guidance"), (("a", None, 1, 2, float("nan")), "guidance"),
                      (("a", None, 1, 2, 51), "guidance"), (("a", 5, 1, 2, 4.0), "negative")]:
        with pytest.raises(ValueError, match=msg):
            studio.compare(*args)


def test_battles_are_blind_random_and_consistent(studio):
    sides = []
    for _ in range(40):
        left, right, public = studio.new_battle("", "sess-A")
        assert set(public) == {"battle_id", "prompt", "category", "suite"}  # no side, no seed
        battle = studio.store.get_battle(public["battle_id"])
        adapter_img = left if battle.adapter_side == "left" else right
        baseline_img = right if battle.adapter_side == "left" else left
        assert adapter_img.getpixel((0, 0)) == (0, 0, 255) and baseline_img.getpixel((0, 0)) == (255, 0, 0)
        assert battle.session == hash_session("sess-A", "test-salt")
        assert battle.prompt in BUILTIN_PROMPTS and battle.prompt_id.startswith("builtin:")
        sides.append(battle.adapter_side)
    assert 8 <= sides.count("left") <= 32  # p(fail) < 1e-4 for a fair coin
    seeds = {c[1] for c in studio.fake.calls}
    assert len(seeds) == 40  # a fresh seed each time
    assert {c[2] for c in studio.fake.calls} == {studio.default_steps}


def test_studio_vote_reveals_after_storing(studio):
    _, _, public = studio.new_battle("  my own prompt ", "sess-A")
    battle = studio.store.get_battle(public["battle_id"])
    assert battle.prompt == "my own prompt" and battle.prompt_id is None
    with pytest.raises(WrongSession):
        studio.vote(public["battle_id"], "left", "sess-B")
    reveal = studio.vote(public["battle_id"], "left", "sess-A")
    assert reveal["adapter_side"] == battle.adapter_side and reveal["seed"] == battle.seed
    assert "session" not in reveal
    md = studio.reveal_markdown(reveal)
    assert "SUR-adapter" in md and "baseline" in md
    with pytest.raises(AlreadyVoted):
        studio.vote(public["battle_id"], "tie", "sess-A")
    with pytest.raises(ValueError, match="at most 500"):
        studio.new_battle("y" * 501, "sess-A")


def test_studio_results_and_csv(studio):
    for choice in ("left", "right", "tie", "left"):
        _, _, public = studio.new_battle("", "s")
        studio.vote(public["battle_id"], choice, "s")
    res = studio.results("tiny", bt_rounds=10)
    assert res["overall"]["votes"] == 4 and res["overall"]["ties"] == 1
    assert len(Path(res["csv"]).read_text().strip().splitlines()) == 5
    assert studio.results("all", bt_rounds=10)["total_votes"] == 4
    assert studio.results("sd15", bt_rounds=10)["total_votes"] == 0
    assert studio.result_presets()[0] == "all" and "tiny" in studio.result_presets()


def test_exporter_failure_never_fails_a_vote(studio):
    class Broken:
        def submit(self, vote):
            raise RuntimeError("hub down")

    studio.exporter = Broken()
    _, _, public = studio.new_battle("", "s")
    assert studio.vote(public["battle_id"], "left", "s")["choice"] == "left"
    assert studio.store.vote_count() == 1


# ----------------------------------------------------------------------------- suites and report
def test_suites_tolerant_loading_and_pool(tmp_path):
    assert load_suites(tmp_path / "missing") == {}
    d = tmp_path / "suites"
    d.mkdir()
    (d / "toy.jsonl").write_text("\n".join([
        json.dumps({"id": "t1", "simple": "two red cats", "prompt": "a long detailed prompt", "category": "count"}),
        "not json",
        json.dumps({"id": "t2", "prompt": "a robot waving", "category": "action"}),
        json.dumps({"id": "t3", "category": "color"}),
        json.dumps(["a list"]),
        "",
    ]))
    (d / "general.jsonl").write_text(json.dumps({"prompt": "a dog on a sofa"}) + "\n")
    suites = load_suites(d)
    assert [p.prompt for p in suites["toy"]] == ["two red cats", "a robot waving"]
    assert suites["toy"][0].category == "count" and suites["general"][0].prompt_id == "general:1"
    assert [p.suite for p in vote_pool(suites, "toy")] == ["toy", "toy"]
    assert [p.prompt for p in vote_pool(suites, "sd15")] == ["a dog on a sofa"]
    assert [p.prompt for p in vote_pool(suites, "sd15", ["toy"])] == ["two red cats", "a robot waving"]
    assert len(vote_pool({}, "toy")) == len(BUILTIN_PROMPTS)
    assert example_prompts(vote_pool(suites, "toy"), 1) == ["two red cats"]
    assert set(example_prompts(vote_pool(suites, "toy"), 8)) == {"two red cats", "a robot waving"}


def test_latest_report(tmp_path):
    runs = tmp_path / "runs"
    assert latest_report(runs) is None
    (runs / "old").mkdir(parents=True)
    (runs / "old" / "report.md").write_text("# old")
    time.sleep(0.02)
    new = runs / "toy"
    (new / "figs").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(new / "figs" / "b.png")
    Image.new("RGB", (4, 4)).save(new / "a.png")
    (new / "report.md").write_text("# toy\n\n![win rates](figs/b.png)\n\n![escape](../../etc.png)\n")
    rep = latest_report(runs)
    assert rep.path == new / "report.md"
    assert [f.name for f in rep.figures] == ["b.png", "a.png"]  # referenced first
    assert "![" not in rep.markdown and "figure: win rates" in rep.markdown
    assert "eval.run" in NO_REPORT
    (new / "broken.png").write_text("not a png")
    text, figures = report_page(runs)
    assert text.startswith(f"*Report: `{new / 'report.md'}`*") and "figure: win rates" in text
    assert [name for _, name in figures] == ["b.png", "a.png"]  # the unreadable one is left out
    assert figures[0][0].mode == "RGB" and figures[0][0].size == (4, 4)
    assert report_page(tmp_path / "none") == (NO_REPORT, [])


# ----------------------------------------------------------------------------- export and config
class RecordingLock:
    def __init__(self):
        self.held = False
        self.entries = 0

    def __enter__(self):
        self.held = True
        self.entries += 1

    def __exit__(self, *exc):
        self.held = False


def test_exporter_appends_jsonl_under_the_lock(tmp_path):
    lock = RecordingLock()
    exp = VoteExporter(tmp_path / "export", lock=lock)
    for i in range(3):
        exp.submit({"battle_id": f"b{i}", "choice": "left", "session": "h", "secret": "x"})
    assert exp.flush(5)
    lines = exp.path.read_text().splitlines()
    assert [json.loads(x)["battle_id"] for x in lines] == ["b0", "b1", "b2"]
    assert "secret" not in lines[0]  # only the export fields leave
    assert lock.entries == 3 and not lock.held
    assert exp.path.name.startswith("votes-") and exp.path.suffix == ".jsonl"
    exp.close()


def test_exporter_write_errors_are_logged_not_raised(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    exp = VoteExporter(blocker / "sub", lock=RecordingLock())  # cannot mkdir under a file
    exp.submit({"battle_id": "b"})
    assert exp.flush(5)
    assert "vote export failed" in caplog.text
    exp.close()


def test_sync_off_by_default(tmp_path):
    assert start_sync(_config(tmp_path)) is None
    assert start_sync(_config(tmp_path, sync_repo="me/votes")) is None  # no token: off


def test_config_from_env(tmp_path):
    cfg = AppConfig.from_env({"SUR_PRESET": "tiny", "SUR_DATA_DIR": str(tmp_path), "SUR_VOTES_PER_MIN": "5",
                              "SUR_STEPS": "3", "GRADIO_SERVER_PORT": "7999", "SUR_SQLITE_SYNC": "normal"})
    assert cfg.preset == "tiny" and cfg.data_dir == tmp_path and cfg.votes_per_minute == 5
    assert cfg.server_port == 7999 and cfg.server_name == "0.0.0.0" and cfg.sqlite_synchronous == "NORMAL"
    assert cfg.generation_defaults() == (3, 5.0)
    assert AppConfig.from_env({"SUR_PRESET": "tiny"}).server_port == 7860
    assert AppConfig.from_env({"SUR_PRESET": "sd15", "SUR_STEPS": "999"}).generation_defaults()[0] == 50
    with pytest.raises(ConfigError, match="SUR_VOTES_PER_MIN"):
        AppConfig.from_env({"SUR_PRESET": "tiny", "SUR_VOTES_PER_MIN": "many"})
    with pytest.raises(ConfigError, match="SUR_SQLITE_SYNC"):
        AppConfig.from_env({"SUR_PRESET": "tiny", "SUR_SQLITE_SYNC": "OFF"})
    assert "hf_secret" not in repr(AppConfig.from_env({"SUR_PRESET": "tiny", "HF_TOKEN": "hf_secret"}))
    assert default_data_dir({}) in (Path("outputs/sur-studio"), Path("/data/sur-studio"))


def test_salt_is_created_once_and_private(tmp_path):
    cfg = AppConfig(preset="tiny", data_dir=tmp_path / "d")
    s1 = cfg.salt()
    assert len(s1) == 64 and cfg.salt() == s1
    assert (tmp_path / "d" / "salt").stat().st_mode & 0o077 == 0


def test_gpu_decorator_is_a_no_op_without_the_spaces_package():
    from surlib.studio.settings import gpu_decorator

    try:
        import spaces

        if callable(getattr(spaces, "GPU", None)):
            pytest.skip("the ZeroGPU `spaces` package is installed here")
    except ImportError:
        pass

    def f(x):
        return x + 1

    assert gpu_decorator(30)(f) is f  # without the ZeroGPU package the decorator is a no-op


def test_typed_prompts_are_shown_literally():
    md = Studio.battle_markdown({"prompt": "two *red* cats [x](javascript:y) <b>", "category": None})
    assert "\\*red\\*" in md and "\\[x\\]" in md and "\\<b\\>" in md
    assert md_escape("a_b|c#d`e~") == "a\\_b\\|c\\#d\\`e\\~"


def test_stores_opened_at_once_on_a_new_file_all_open(tmp_path):
    """The WAL switch answers "database is locked" at once (no busy wait) when another
    connection is creating the file; an app restarting next to a live one must not crash."""
    failures = []
    for r in range(60):
        path, barrier = tmp_path / f"v{r}.sqlite", threading.Barrier(6)

        def open_store():
            barrier.wait()
            try:
                VoteStore(path, checkpoint_every_s=None).close()
            except Exception as e:  # noqa: BLE001 - any failure counts
                failures.append(repr(e))

        threads = [threading.Thread(target=open_store) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
