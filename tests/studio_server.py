"""Helpers for the tests that serve the app on localhost: stand-in pipelines and a launcher.

Not a test module. `serve(tmp, pipe=..., **settings)` builds `app.py`'s Blocks around a
`Studio` and launches it on a free port in this process; a stand-in pipeline (`FakePipe`, or
`SlowPipe` for a generation that takes a while) keeps the server start to a fraction of a second.
"""

from __future__ import annotations

import json
import threading
import time

from PIL import Image

from surlib.pipeline import Generation


class FakePipe:
    """Stands in for SURPipeline: baseline all red, adapter all blue, 64 px; remembers calls."""

    def __init__(self, delay_s: float = 0.0):
        self.calls = []
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def generate_pair(self, prompt, seed=0, steps=25, guidance=7.5, negative_prompt=None, **kw):
        with self._lock:  # one generation at a time, like the real pipeline
            self.calls.append((prompt, seed, steps, guidance, negative_prompt))
            if self.delay_s:
                time.sleep(self.delay_s)
        return Generation(images={"baseline": Image.new("RGB", (64, 64), (255, 0, 0)),
                                  "adapter": Image.new("RGB", (64, 64), (0, 0, 255))},
                          prompt=prompt, seed=seed, steps=steps, guidance=guidance,
                          negative_prompt=negative_prompt, timings={"total_s": self.delay_s})

    def set_progress_bar_config(self, **kw):
        pass


def add_pairs(studio, voter_key: str, n: int, adapter_side: str = "left") -> list[str]:
    """Ids of `n` blind pairs owned by `voter_key`, written straight into the studio's store (no
    generation), for tests that vote many times."""
    from surlib.studio.votes import Battle, new_battle_id

    ids = []
    for _ in range(n):
        left, right = ("tiny:sur-adapter", "tiny:baseline") if adapter_side == "left" else ("tiny:baseline", "tiny:sur-adapter")
        b = Battle(battle_id=new_battle_id(), created_at=time.time(), session=voter_key, prompt="p", seed=1,
                   left_system=left, right_system=right, adapter_side=adapter_side, preset="tiny")
        studio.store.add_battle(b)
        ids.append(b.battle_id)
    return ids


def write_suite(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def serve(tmp, rows=None, pipe=None, **settings):
    """(demo, studio, cfg, url): app.py's Blocks on 127.0.0.1:<free port> (tiny preset unless
    `preset=` is given); `pipe` None loads the real tiny preset."""
    import app
    from conftest import free_port
    from surlib.studio.settings import AppConfig

    rows = rows or [{"id": "toy-1", "simple": "two red cats", "category": "counting"},
                    {"id": "toy-2", "simple": "a blue robot", "category": "color"}]
    suites = write_suite(tmp / "suites", rows)
    settings.setdefault("preset", "tiny")
    settings.setdefault("steps", 1)
    cfg = AppConfig(data_dir=tmp / "data", runs_dir=tmp / "runs", suites_dir=suites,
                    server_name="127.0.0.1", server_port=free_port(), **settings)
    demo, studio = app.create_app(cfg, pipe=pipe)
    kwargs = app.launch_kwargs(cfg)
    kwargs.update(prevent_thread_lock=True, quiet=True)
    demo.launch(**kwargs)
    return demo, studio, cfg, f"http://127.0.0.1:{cfg.server_port}/"
