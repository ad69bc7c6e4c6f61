"""Bench the studio: Compare round trip, and vote-store latency under 20 concurrent clients.

    python bench/bench_app.py                      # default preset (toy, else tiny), 1 torch thread
    python bench/bench_app.py --preset tiny --runs 10 --threads 2   # 2 torch threads
    python bench/bench_app.py --skip-compare       # only the vote store (no torch import)

Targets (issue 5): Compare click → both images ≤ 2 s median on 2 CPU cores; a vote stored in
≤ 50 ms at p99 under a 20-client load.

1. Compare: the app is served on localhost in this process; `gradio_client` calls /generate
   with the preset's default steps and guidance; median and p90 of --runs calls after one
   warm-up, next to the generation time the pipeline itself reports (the rest is HTTP, queue
   and PNG encoding), and the CPU seconds the click costs this process: on a shared, overloaded
   machine the wall time says more about the neighbours than about the app, the CPU time does
   not. Also the /vote round trip.
2. Votes: 20 clients cast 25 votes each on one store file; the latency of each
   `VoteStore.record_vote` call (checks, insert, COMMIT) is recorded. Two pacings: --think 0.2
   (each client waits an exponential 0.2 s on average between votes: 100 votes/s offered, ten
   times what 20 people at the 30-votes-a-minute limit could send; the target load) and
   --think 0 (back to back: a stress test, 500 votes as fast as possible, where the latency is
   mostly waiting for the other 19 commits). Two layouts: 20 threads of one process (how the app
   runs: Gradio's worker threads share one store) and 20 processes (several app processes on
   one file; informational). For synchronous=FULL (the default) and NORMAL.

Prints a table and writes --json (default bench/out/bench_app.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOTES_PY = ROOT / "surlib" / "studio" / "votes.py"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _votes_module():
    """surlib/studio/votes.py without importing the surlib package (and so without torch)."""
    if "sur_votes" in sys.modules:
        return sys.modules["sur_votes"]
    spec = importlib.util.spec_from_file_location("sur_votes", VOTES_PY)
    mod = sys.modules["sur_votes"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def load_avg():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


# ----------------------------------------------------------------------------- votes
def _battles(votes, store, session, n):
    ids = []
    for i in range(n):
        b = votes.Battle(battle_id=votes.new_battle_id(), created_at=time.time(), session=session,
                         prompt=f"p{i}", seed=i, left_system="b:baseline", right_system="b:sur-adapter",
                         adapter_side="right", preset="b")
        store.add_battle(b)
        ids.append(b.battle_id)
    return ids


def bench_votes_threads(sync: str, clients: int = 20, per_client: int = 25, think_s: float = 0.0) -> dict:
    votes = _votes_module()
    with tempfile.TemporaryDirectory(dir=ROOT / "bench" / "out") as tmp:
        store = votes.VoteStore(Path(tmp) / "v.sqlite", synchronous=sync, votes_per_minute=None, votes_per_day=None)
        plans = [_battles(votes, store, f"s{k}", per_client) for k in range(clients)]
        lat, lock, start = [], threading.Lock(), threading.Barrier(clients)

        def client(k):
            mine = []
            rng = random.Random(k)
            start.wait()
            for i, bid in enumerate(plans[k]):
                if think_s:
                    time.sleep(rng.expovariate(1.0 / think_s))
                t = time.perf_counter()
                store.record_vote(bid, ("left", "right", "tie", "both_bad")[i % 4], f"s{k}")
                mine.append(time.perf_counter() - t)
            with lock:
                lat.extend(mine)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        t0 = time.perf_counter()
        [t.start() for t in threads]
        [t.join() for t in threads]
        wall = time.perf_counter() - t0
        assert store.vote_count() == clients * per_client
        store.close()
    return _vote_stats("threads", sync, lat, wall, think_s)


PROC_WRITER = textwrap.dedent("""
    import importlib.util, json, sys, time
    spec = importlib.util.spec_from_file_location("sur_votes", sys.argv[1])
    votes = sys.modules["sur_votes"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(votes)
    import random
    db, session, n, sync, think = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
    rng = random.Random(session)
    store = votes.VoteStore(db, synchronous=sync, votes_per_minute=None, votes_per_day=None)
    ids = []
    for i in range(n):
        b = votes.Battle(battle_id=votes.new_battle_id(), created_at=time.time(), session=session, prompt="p",
                         seed=i, left_system="b:baseline", right_system="b:sur-adapter", adapter_side="left")
        store.add_battle(b); ids.append(b.battle_id)
    print("READY", flush=True); sys.stdin.readline()
    lat = []
    for i, bid in enumerate(ids):
        if think:
            time.sleep(rng.expovariate(1.0 / think))
        t = time.perf_counter(); store.record_vote(bid, "left", session); lat.append(time.perf_counter() - t)
    print(json.dumps(lat), flush=True)
""")


def bench_votes_processes(sync: str, clients: int = 20, per_client: int = 25, think_s: float = 0.0) -> dict:
    with tempfile.TemporaryDirectory(dir=ROOT / "bench" / "out") as tmp:
        db = Path(tmp) / "v.sqlite"
        _votes_module().VoteStore(db, synchronous=sync).close()  # create the schema once
        procs = [subprocess.Popen([sys.executable, "-c", PROC_WRITER, str(VOTES_PY), str(db), f"s{k}",
                                   str(per_client), sync, str(think_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True) for k in range(clients)]
        for p in procs:
            assert p.stdout.readline().strip() == "READY"
        t0 = time.perf_counter()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        lat = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            lat.extend(json.loads(out.strip().splitlines()[-1]))
        wall = time.perf_counter() - t0
    return _vote_stats("processes", sync, lat, wall, think_s)


def _vote_stats(layout, sync, lat, wall, think_s):
    return {"layout": layout, "synchronous": sync, "think_s": think_s, "votes": len(lat), "wall_s": wall,
            "p50_ms": 1000 * pct(lat, 50), "p90_ms": 1000 * pct(lat, 90), "p99_ms": 1000 * pct(lat, 99),
            "max_ms": 1000 * max(lat), "votes_per_s": len(lat) / wall}


# ----------------------------------------------------------------------------- compare
def bench_compare(preset: str | None, runs: int, threads: int, api_votes: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    import app
    from gradio_client import Client

    from surlib.studio.settings import AppConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp_holder = tempfile.TemporaryDirectory(dir=ROOT / "bench" / "out")
    tmp = tmp_holder.name
    env = dict(os.environ, SUR_DATA_DIR=tmp, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               SUR_VOTES_PER_MIN="100000")
    if preset:
        env["SUR_PRESET"] = preset
    cfg = AppConfig.from_env(env)
    t0 = time.perf_counter()
    demo, studio = app.create_app(cfg)
    startup = time.perf_counter() - t0
    kwargs = app.launch_kwargs(cfg)
    kwargs.update(prevent_thread_lock=True, quiet=True)
    demo.launch(**kwargs)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        steps, guidance = studio.default_steps, studio.default_guidance
        prompt = (studio.examples(1) or ["two red cats sitting"])[0]
        client.predict(prompt, "", 0, steps, guidance, api_name="/generate")  # warm-up
        rt, gen, cpu = [], [], []
        for i in range(runs):
            t, c = time.perf_counter(), time.process_time()
            _, _, _, timing = client.predict(prompt, "", i + 1, steps, guidance, api_name="/generate")
            rt.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)  # CPU of this process (server + client), all threads
            gen.append(float(timing.split("**")[1].split()[0]))
        vote_rt = []
        session = studio.session(client.session_hash)
        from surlib.studio.votes import Battle, new_battle_id

        for i in range(api_votes):
            b = Battle(battle_id=new_battle_id(), created_at=time.time(), session=session, prompt="p", seed=i,
                       left_system="x:baseline", right_system="x:sur-adapter", adapter_side="right")
            studio.store.add_battle(b)
            t = time.perf_counter()
            client.predict(b.battle_id, "tie", api_name="/vote")
            vote_rt.append(time.perf_counter() - t)
    finally:
        demo.close()
        studio.store.close()
        tmp_holder.cleanup()
    return {"preset": studio.preset, "steps": steps, "guidance": guidance, "torch_threads": threads,
            "runs": runs, "startup_s": startup,
            "roundtrip_median_s": statistics.median(rt), "roundtrip_p90_s": pct(rt, 90),
            "generation_median_s": statistics.median(gen),
            "cpu_median_s": statistics.median(cpu),
            "vote_roundtrip_median_ms": 1000 * statistics.median(vote_rt) if vote_rt else None,
            "vote_roundtrip_p90_ms": 1000 * pct(vote_rt, 90) if vote_rt else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=os.environ.get("SUR_PRESET"), help="default: the app's default")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 leaves the second core to the server "
                         "(2 threads on a busy box spin: 10x the CPU)")
    ap.add_argument("--api-votes", type=int, default=20, help="/vote round trips to time")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--per-client", type=int, default=25)
    ap.add_argument("--sync", nargs="+", default=["FULL", "NORMAL"])
    ap.add_argument("--think", nargs="+", type=float, default=[0.2, 0.0],
                    help="mean seconds between one client's votes (exponential); 0 = back to back")
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--skip-votes", action="store_true")
    ap.add_argument("--skip-processes", action="store_true")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "bench_app.json"))
    args = ap.parse_args(argv)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    out = {"host": platform.node(), "cpus": os.cpu_count(), "load_avg_before": load_avg(),
           "python": platform.python_version(), "votes": []}

    if not args.skip_votes:
        for think in args.think:
            for sync in args.sync:
                out["votes"].append(bench_votes_threads(sync, args.clients, args.per_client, think))
                if not args.skip_processes:
                    out["votes"].append(bench_votes_processes(sync, args.clients, args.per_client, think))
        print(f"\nvote store (record_vote latency), {args.clients} clients x {args.per_client} votes "
              f"(load avg {out['load_avg_before'][0]:.1f} on {out['cpus']} CPUs)")
        print(f"{'think s':>7} {'layout':<10} {'sync':<7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'votes/s':>8}")
        for r in out["votes"]:
            print(f"{r['think_s']:7.2f} {r['layout']:<10} {r['synchronous']:<7} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} "
                  f"{r['p99_ms']:8.2f} {r['max_ms']:8.2f} {r['votes_per_s']:8.0f}"
                  f"{'' if r['p99_ms'] <= 50 else '   (over the 50 ms target)'}")

    if not args.skip_compare:
        c = out["compare"] = bench_compare(args.preset, args.runs, args.threads, args.api_votes)
        print(f"\ncompare (/generate via gradio_client), preset {c['preset']}, {c['steps']} steps, "
              f"guidance {c['guidance']:g}, {c['torch_threads']} torch threads, {c['runs']} runs")
        print(f"  round trip median {c['roundtrip_median_s']:.2f} s (p90 {c['roundtrip_p90_s']:.2f} s); "
              f"generation itself median {c['generation_median_s']:.2f} s; target <= 2 s: "
              f"{'met' if c['roundtrip_median_s'] <= 2 else 'NOT met'}")
        print(f"  CPU time per click (server + client, all threads) median {c['cpu_median_s']:.2f} s: "
              f"the work is mostly sequential, so about that long on idle cores "
              f"(load avg now {load_avg()[0]:.1f} on {os.cpu_count()} CPUs)")
        if c["vote_roundtrip_median_ms"] is not None:
            print(f"  /vote round trip median {c['vote_roundtrip_median_ms']:.0f} ms "
                  f"(p90 {c['vote_roundtrip_p90_ms']:.0f} ms)")
        print(f"  model load + page build {c['startup_s']:.1f} s")
    out["load_avg_after"] = load_avg()
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
