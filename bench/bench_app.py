"""Bench the studio: Compare round trip, and vote-store latency under 20 concurrent clients.

    python bench/bench_app.py                      # default preset (toy, else tiny), 1 torch thread
    python bench/bench_app.py --preset tiny --runs 10 --threads 2   # 2 torch threads
    python bench/bench_app.py --skip-compare --skip-browser   # only the vote store (no torch import)
    python bench/bench_app.py --skip-votes --skip-compare      # only the Chromium bench (toy preset)
    python bench/bench_app.py --skip-votes --skip-compare --skip-browser   # only the survey-integrity bench

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

3. In the browser (Chromium, as a visitor): the Compare click until both new images are loaded on
   the page, median of --browser-runs clicks at the default steps, for a prompt with a spell (a
   batch of three) and one without (the pair); then the Eval tab's Run button until its report
   shows (--eval-runs presses). Targets: ≤ 2 s per click on 2 cores; < 60 s for Run.

4. Survey integrity (`bench_survey`, stand-in pipelines): a vote's round trip while the
   generation queue is full, extra votes a new client on the same address gets past the limit,
   export files after 200 /results calls.

Prints a table and writes --json (default bench/out/bench_app.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import shutil
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


# ----------------------------------------------------------------------------- in the browser
BROWSER_PROMPTS = {  # with a spell: a batch of three; without: the pair alone
    "spell": "three red robots jumping against a white wall",
    "no spell": "three red robots jumping",
}
_NEW_IMAGES = """([ids, before]) => ids.every((id, i) => {
    const img = document.querySelector(`#${id} img`);
    return img && img.src !== before[i] && img.complete && img.naturalWidth > 0;
})"""


_NEW_REPORT = """(old) => {
    const el = document.querySelector('#eval-report');
    const tracker = el.querySelector('[data-testid=status-tracker]');
    const idle = !tracker || tracker.classList.contains('hide');
    return idle && el.innerText !== old && el.innerText.includes('toy_heldout suite');
}"""


def bench_browser(preset: str | None, runs: int, threads: int, eval_runs: int) -> dict:
    """Compare in Chromium: from the Generate click until both new images are loaded on the page,
    `runs` clicks (a new seed each, after one warm-up) per prompt of BROWSER_PROMPTS at the
    default steps; then the Eval tab's Run button, from its click until the new report shows."""
    import torch
    from playwright.sync_api import sync_playwright

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    import app

    from surlib.studio.settings import AppConfig

    chromium = os.environ.get("SUR_CHROMIUM", "/usr/bin/chromium")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp_holder = tempfile.TemporaryDirectory(dir=ROOT / "bench" / "out")
    tmp = Path(tmp_holder.name)
    env = dict(os.environ, SUR_DATA_DIR=str(tmp / "data"), SUR_RUNS_DIR=str(tmp / "runs"),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    if preset:
        env["SUR_PRESET"] = preset
    cfg = AppConfig.from_env(env)
    demo, studio = app.create_app(cfg)
    kwargs = app.launch_kwargs(cfg)
    kwargs.update(prevent_thread_lock=True, quiet=True)
    demo.launch(**kwargs)
    out = {"preset": studio.preset, "steps": studio.default_steps, "torch_threads": threads, "runs": runs,
           "click_to_images_s": {}, "generation_s": {}, "server_cpu_s": {}, "eval_run_s": [],
           "load_avg_before": load_avg()}
    ids = ["img-baseline", "img-adapter"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(f"http://127.0.0.1:{port}/")
            seed = page.locator("#compare-seed input")
            for name, prompt in BROWSER_PROMPTS.items():
                page.locator("#compare-prompt textarea").fill(prompt)
                times, gens, cpus = [], [], []
                for i in range(runs + 1):  # the first is a warm-up (traces, caches)
                    seed.fill(str(1000 + i))
                    before = [page.evaluate(f"document.querySelector('#{k} img')?.src || ''") for k in ids]
                    t, c = time.perf_counter(), time.process_time()
                    page.locator("#generate-btn").click()
                    page.wait_for_function(_NEW_IMAGES, arg=[ids, before], polling=10)
                    if i:
                        times.append(time.perf_counter() - t)
                        cpus.append(time.process_time() - c)  # this process: the server (and the driver)
                        gens.append(float(page.locator("#timing").inner_text().split(" in ")[1].split()[0]))
                out["click_to_images_s"][name], out["generation_s"][name], out["server_cpu_s"][name] = \
                    times, gens, cpus
            if studio.quick_eval.available:
                page.get_by_role("tab", name="Eval").first.click()
                for _ in range(eval_runs):
                    old = page.locator("#eval-report").inner_text()
                    t = time.perf_counter()
                    page.locator("#eval-run").click()
                    page.wait_for_function(_NEW_REPORT, arg=old, polling=50)
                    out["eval_run_s"].append(time.perf_counter() - t)
            browser.close()
    finally:
        demo.close()
        studio.store.close()
        tmp_holder.cleanup()
    return out


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
               SUR_VOTES_PER_MIN="100000", SUR_PAIRS_PER_MIN="100000")
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
            timing = client.predict(prompt, "", i + 1, steps, guidance, api_name="/generate")[3]
            rt.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)  # CPU of this process (server + client), all threads
            gen.append(float(timing.split("**")[1].split()[0]))
        vote_rt = []
        from surlib.studio.identity import voter_key
        from surlib.studio.votes import Battle, new_battle_id

        session = voter_key("ip:127.0.0.1", cfg.salt())  # the server's voter for this client
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


def _serve_stand_in(delay_s: float, **settings):
    """app.py's Blocks on a free localhost port around a stand-in pipeline that takes `delay_s`
    per generation (tests/studio_server.py), tiny preset; returns (demo, studio, url, folder)."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    import app
    from studio_server import FakePipe, write_suite

    from surlib.studio.settings import AppConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(dir=ROOT / "bench" / "out"))
    suites = write_suite(tmp / "suites", [{"id": "b-1", "simple": "two red cats", "category": "counting"}])
    cfg = AppConfig(preset="tiny", data_dir=tmp / "data", suites_dir=suites, runs_dir=tmp / "runs", steps=1,
                    server_name="127.0.0.1", server_port=port, **settings)
    demo, studio = app.create_app(cfg, pipe=FakePipe(delay_s=delay_s))
    kwargs = app.launch_kwargs(cfg)
    kwargs.update(prevent_thread_lock=True, quiet=True)
    demo.launch(**kwargs)
    return demo, studio, f"http://127.0.0.1:{port}", tmp


def _pairs_for(studio, key, n):
    from surlib.studio.votes import Battle, new_battle_id

    ids = []
    for i in range(n):
        b = Battle(battle_id=new_battle_id(), created_at=time.time(), session=key, prompt="p", seed=i,
                   left_system="tiny:baseline", right_system="tiny:sur-adapter", adapter_side="right", preset="tiny")
        studio.store.add_battle(b)
        ids.append(b.battle_id)
    return ids


def bench_survey(votes: int = 20, queue_max: int = 5, generations: int = 20, results_calls: int = 200,
                 extra: int = 20) -> dict:
    """Survey integrity (issue 17), on stand-in pipelines (2 s per generation):

    * a vote's round trip while `generations` concurrent /generate calls keep the queue
      (SUR_QUEUE_MAX=`queue_max`) full: the page's route (/run/predict, what a click sends),
      the REST /run/vote, and gradio_client's /vote (which always joins the queue);
    * votes accepted from `extra` new clients / rotated session hashes on one address once it
      is at its limit (SUR_VOTES_PER_MIN=5);
    * export files left by `results_calls` /results calls, and their median round trip."""
    import httpx
    from gradio_client import Client
    from gradio_client.utils import QueueError

    sys.path.insert(0, str(ROOT))
    from surlib.studio.identity import voter_key

    out: dict = {"votes": votes, "queue_max": queue_max, "generations": generations}
    demo, studio, url, folder = _serve_stand_in(2.0, queue_max_size=queue_max, votes_per_minute=100000,
                                        pairs_per_minute=100000)
    try:
        key = voter_key("ip:127.0.0.1", studio.config.salt())
        ids = _pairs_for(studio, key, 3 * votes)
        config = httpx.get(f"{url}/config", timeout=30).json()
        comp = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "vote-left")
        fn_index = next(d["id"] for d in config["dependencies"] if any(t[0] == comp for t in d["targets"]))
        gen_client = Client(url + "/", verbose=False)
        jobs, refused_gen = [], 0
        for _ in range(generations):
            try:
                jobs.append(gen_client.submit("two red cats", "", 1, 1, 5.0, api_name="/generate"))
            except QueueError:
                refused_gen += 1
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/gradio_api/queue/status").json()["queue_size"] < queue_max - 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the generation queue never filled")
            time.sleep(0.05)
        page, rest, client_rt, client_refused, sizes = [], [], [], 0, []
        vote_client = Client(url + "/", verbose=False)
        with httpx.Client(timeout=30) as http:
            for i in range(votes):
                sizes.append(http.get(f"{url}/gradio_api/queue/status").json()["queue_size"])
                t = time.perf_counter()
                r = http.post(f"{url}/gradio_api/run/predict", json={
                    "data": [ids[3 * i]], "fn_index": fn_index, "trigger_id": comp, "session_hash": f"b{i}",
                    "event_data": None})
                page.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
                t = time.perf_counter()
                r = http.post(f"{url}/gradio_api/run/vote", json={"data": [ids[3 * i + 1], "left"]})
                rest.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
                t = time.perf_counter()
                try:
                    vote_client.predict(ids[3 * i + 2], "tie", api_name="/vote")
                    client_rt.append(time.perf_counter() - t)
                except QueueError:
                    client_refused += 1
        for j in jobs:
            try:
                j.result(timeout=300)
            except Exception:  # noqa: BLE001 - "Queue is full" for the ones beyond the queue
                refused_gen += 1
        out.update(page_vote_median_ms=1000 * statistics.median(page), page_vote_max_ms=1000 * max(page),
                   rest_vote_median_ms=1000 * statistics.median(rest), rest_vote_max_ms=1000 * max(rest),
                   client_vote_refused=client_refused, client_vote_median_ms=(
                       1000 * statistics.median(client_rt) if client_rt else None),
                   queue_size_during_votes=[min(sizes), max(sizes)], generations_refused=refused_gen,
                   stored=sum(studio.store.get_vote(b) is not None for b in ids))
    finally:
        demo.close()
        studio.store.close()
        shutil.rmtree(folder, ignore_errors=True)

    demo, studio, url, folder = _serve_stand_in(0.0, votes_per_minute=5, pairs_per_minute=100000)
    try:
        key = voter_key("ip:127.0.0.1", studio.config.salt())
        ids = _pairs_for(studio, key, 5 + extra)
        first = Client(url + "/", verbose=False)
        for b in ids[:5]:
            first.predict(b, "left", api_name="/vote")
        accepted = 0
        for i, b in enumerate(ids[5:]):
            c = Client(url + "/", verbose=False) if i % 2 == 0 else first
            if i % 2:
                c.session_hash = f"rotated-{i}"
            try:
                c.predict(b, "left", api_name="/vote")
                accepted += 1
            except Exception:  # noqa: BLE001 - refused: the limit held
                pass
        out.update(extra_attempts=extra, extra_accepted=accepted, stored_for_address=studio.store.vote_count(session=key))
        rts = []
        with httpx.Client(timeout=60) as http:
            for _ in range(results_calls):
                t = time.perf_counter()
                eid = http.post(f"{url}/gradio_api/call/results", json={"data": ["tiny"]}).json()["event_id"]
                assert "event: complete" in http.get(f"{url}/gradio_api/call/results/{eid}").text
                rts.append(time.perf_counter() - t)
        out.update(results_calls=results_calls,
                   export_files=sorted(p.name for p in studio.tally.export.folder.iterdir()),
                   results_median_s=statistics.median(rts))
    finally:
        demo.close()
        studio.store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return out


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
    ap.add_argument("--skip-browser", action="store_true", help="no Chromium bench (Compare clicks, Eval's Run)")
    ap.add_argument("--browser-runs", type=int, default=7, help="timed Compare clicks per prompt in Chromium")
    ap.add_argument("--eval-runs", type=int, default=1, help="timed presses of the Eval tab's Run button")
    ap.add_argument("--skip-votes", action="store_true")
    ap.add_argument("--skip-survey", action="store_true", help="no survey-integrity bench (votes under a full "
                    "queue, stuffing from one address, export files after many /results calls)")
    ap.add_argument("--results-calls", type=int, default=200, help="/results calls of the survey bench")
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
    if not args.skip_browser:
        b = out["browser"] = bench_browser(args.preset, args.browser_runs, args.threads, args.eval_runs)
        print(f"\nin Chromium, preset {b['preset']}, {b['steps']} steps, {b['torch_threads']} torch threads "
              f"(load avg {b['load_avg_before'][0]:.1f} before, {load_avg()[0]:.1f} after, on {os.cpu_count()} CPUs)")
        for name, times in b["click_to_images_s"].items():
            med = statistics.median(times)
            print(f"  Compare click -> both images shown, prompt with {name}: median {med:.2f} s over {len(times)} "
                  f"clicks (min {min(times):.2f}, max {max(times):.2f}); target <= 2 s: "
                  f"{'met' if med <= 2 else 'NOT met'}; of which generation (server's own timing) median "
                  f"{statistics.median(b['generation_s'][name]):.2f} s; server-process CPU per click median "
                  f"{statistics.median(b['server_cpu_s'][name]):.2f} s")
        if b["eval_run_s"]:
            print(f"  Eval Run button -> report shown: {', '.join(f'{t:.1f}' for t in b['eval_run_s'])} s "
                  f"(target < 60 s)")
    if not args.skip_survey:
        s = out["survey"] = bench_survey(args.api_votes, results_calls=args.results_calls)
        print(f"\nsurvey integrity (stand-in pipeline, 2 s per generation; load avg {load_avg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs)")
        print(f"  vote with the generation queue full (SUR_QUEUE_MAX={s['queue_max']}, {s['generations']} "
              f"concurrent /generate; queue size {s['queue_size_during_votes'][0]}-{s['queue_size_during_votes'][1]} "
              f"during the votes), median of {s['votes']}: page route {s['page_vote_median_ms']:.0f} ms "
              f"(max {s['page_vote_max_ms']:.0f}), REST /run/vote {s['rest_vote_median_ms']:.0f} ms "
              f"(max {s['rest_vote_max_ms']:.0f}); target < 1 s: "
              f"{'met' if max(s['page_vote_median_ms'], s['rest_vote_median_ms']) < 1000 else 'NOT met'}")
        print(f"  gradio_client /vote joins the queue: {s['client_vote_refused']} of {s['votes']} refused "
              f"(\"Queue is full\"); generations refused: {s['generations_refused']}")
        print(f"  one address at its limit (5/min): {s['extra_accepted']} of {s['extra_attempts']} extra votes "
              f"accepted from new clients and rotated session hashes ({s['stored_for_address']} stored)")
        print(f"  after {s['results_calls']} /results calls: {len(s['export_files'])} export file(s) "
              f"{s['export_files']}; /results median {s['results_median_s']:.2f} s")
    out["load_avg_after"] = load_avg()
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
