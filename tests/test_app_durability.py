"""Votes survive concurrency and SIGKILL: real processes on one SQLite file, and a real server.

* 20 writer processes cast 500 votes in total → exactly 500 rows.
* A writer process SIGKILLed mid-stream → every vote it acknowledged is in the database.
* `python app.py` SIGKILLed while 4 gradio_client sessions vote, restarted on the same data dir
  → every acknowledged vote is there, the file is intact, and the restarted app works.

The writer processes load surlib/studio/votes.py by file path (standard library only), so they start
in a fraction of a second without importing torch.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from conftest import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VOTES_PY = ROOT / "surlib" / "studio" / "votes.py"

WRITER = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("sur_votes", sys.argv[1])
    votes = sys.modules["sur_votes"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(votes)
    db, session, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = votes.VoteStore(db, votes_per_minute=None, votes_per_day=None)
    ids = []
    for i in range(n):
        b = votes.Battle(battle_id=votes.new_battle_id(), created_at=time.time(), session=session,
                         prompt=f"p{i}", seed=i, left_system="t:baseline", right_system="t:sur-adapter",
                         adapter_side="right", preset="t")
        store.add_battle(b); ids.append(b.battle_id)
    print("READY", flush=True)
    sys.stdin.readline()                      # start line: all writers vote at once
    for i, bid in enumerate(ids):
        store.record_vote(bid, ("left", "right", "tie", "both_bad")[i % 4], session)
        print("ACK", bid, flush=True)         # acknowledged: printed only after COMMIT
    print("DONE", flush=True)
""")


def _start_writers(db, sessions, n):
    """One writer process per session, each with n pairs; released together once all are ready."""
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(VOTES_PY), str(db), session, str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for session in sessions]
    for p in procs:
        assert p.stdout.readline().strip() == "READY", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


def _acked(output):
    return {line.split()[1] for line in output.splitlines() if line.startswith("ACK")}


def _count(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0]


def _voted_ids(db):
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT battle_id FROM votes")}


def _integrity(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.timeout(240)
def test_20_writer_processes_500_votes(tmp_path):
    db = tmp_path / "votes.sqlite"
    procs = _start_writers(db, [f"session-{k}" for k in range(20)], 25)
    acked = set()
    for p in procs:
        out, err = p.communicate(timeout=200)
        assert p.returncode == 0, err
        assert out.splitlines()[-1] == "DONE"
        acked |= _acked(out)
    assert len(acked) == 500
    assert _count(db) == 500
    assert _voted_ids(db) == acked
    assert _integrity(db) == "ok"


@pytest.mark.timeout(120)
def test_sigkilled_writer_keeps_every_acknowledged_vote(tmp_path):
    db = tmp_path / "votes.sqlite"
    procs = _start_writers(db, ["s0", "s1"], 400)
    acked = set()
    victim = procs[0]
    while len(acked) < 60:
        line = victim.stdout.readline()
        assert line, victim.stderr.read()
        if line.startswith("ACK"):
            acked.add(line.split()[1])
    os.kill(victim.pid, signal.SIGKILL)  # mid-stream, while the other writer keeps going
    victim.wait(timeout=30)
    rest, _ = victim.communicate(timeout=30)
    acked |= _acked(rest)
    out, err = procs[1].communicate(timeout=100)
    assert procs[1].returncode == 0, err
    acked_other = _acked(out)
    stored = _voted_ids(db)
    assert acked <= stored and acked_other <= stored
    assert _integrity(db) == "ok"


# ----------------------------------------------------------------------------- a real server
def _start_server(data_dir, port, log_path):
    env = dict(os.environ, SUR_PRESET="tiny", SUR_DATA_DIR=str(data_dir), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), SUR_STEPS="1", SUR_SESSION_SALT="durability-test-salt",
               SUR_VOTES_PER_MIN="100000", SUR_TORCH_THREADS="1", OMP_NUM_THREADS="1",
               SUR_TRUSTED_PROXIES="127.0.0.1", SUR_PAIRS_PER_MIN="100000",
               HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", SUR_LOG_LEVEL="WARNING")
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}:\n{Path(log_path).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"app.py did not come up in 240 s:\n{Path(log_path).read_text()[-3000:]}")


@pytest.mark.timeout(600)
def test_server_sigkill_during_voting_keeps_acknowledged_votes(tmp_path):
    from gradio_client import Client

    sys.path.insert(0, str(ROOT))
    from surlib.studio.identity import voter_key
    from surlib.studio.votes import Battle, VoteStore, new_battle_id

    data = tmp_path / "data"
    log_path = tmp_path / "server.log"
    proc, url = _start_server(data, free_port(), log_path)
    try:
        db = data / "votes.sqlite"
        store = VoteStore(db)  # a second process on the same file, as a restarted server would be
        # four voters at four addresses: the server trusts its localhost peer as a proxy here
        clients = [Client(url, verbose=False, headers={"X-Forwarded-For": f"203.0.113.{k + 1}"}) for k in range(4)]
        plans = []
        for k, c in enumerate(clients):  # pairs as /new_battle would make them, for these four voters
            session = voter_key(f"ip:203.0.113.{k + 1}", "durability-test-salt")
            ids = []
            for i in range(200):
                b = Battle(battle_id=new_battle_id(), created_at=time.time(), session=session, prompt=f"p{i}",
                           seed=i, left_system="tiny:baseline", right_system="tiny:sur-adapter",
                           adapter_side=("left", "right")[i % 2], preset="tiny")
                store.add_battle(b)
                ids.append(b.battle_id)
            plans.append(ids)
        # and one real pair through the server
        left, right, _, real_id = clients[0].predict("", api_name="/new_battle")
        plans[0].insert(0, real_id)

        acked, attempted, lock, stop = [], [], threading.Lock(), threading.Event()

        def voter(client, ids):
            for bid in ids:
                if stop.is_set():
                    return
                with lock:
                    attempted.append(bid)
                try:
                    client.submit(bid, "left", api_name="/vote").result(timeout=60)
                except Exception:
                    return  # the server is gone
                with lock:
                    acked.append(bid)

        threads = [threading.Thread(target=voter, args=(c, ids), daemon=True) for c, ids in zip(clients, plans)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 180
        while len(acked) < 24 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acked) >= 24, "the server acknowledged too few votes"
        os.kill(proc.pid, signal.SIGKILL)  # mid-vote: four clients are voting right now
        proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=90)
        with lock:
            acked_now, attempted_now = set(acked), set(attempted)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    stored = _voted_ids(db)
    assert acked_now <= stored, f"lost {len(acked_now - stored)} acknowledged votes"
    assert stored <= attempted_now  # nothing invented
    assert real_id in stored
    assert _integrity(db) == "ok"

    # restart on the same data dir: the votes are there and the app works
    proc, url = _start_server(data, free_port(), log_path)
    try:
        c = Client(url, verbose=False)
        numbers = c.predict("all", api_name="/results")[4]
        assert numbers["total_votes"] == len(stored)
        _, _, _, bid = c.predict("", api_name="/new_battle")
        assert c.predict(bid, "tie", api_name="/vote")["choice"] == "tie"
        assert _voted_ids(db) == stored | {bid}
    finally:
        proc.kill()
        proc.wait()
        store.close()
