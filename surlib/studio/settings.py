"""Settings of the SUR-adapter studio (app.py), all read from environment variables.

The module itself needs only the standard library (the presets are imported only to pick the
default preset name when SUR_PRESET is unset).

Variables (defaults in brackets):

- SUR_PRESET: model preset ["toy" if the toy preset exists, else "tiny"; "sd15" on a GPU Space]
- SUR_DATA_DIR: vote database, salt, sync exports [/data/sur-studio if /data is writable
  (Spaces persistent storage), else ./outputs/sur-studio]
- SUR_RUNS_DIR: where the Eval tab looks for */report.md [runs]
- SUR_SUITES_DIR: prompt suites, *.jsonl [assets/suites]
- SUR_VOTE_SUITES: comma list of suite names the Vote tab draws from [automatic]
- SUR_STEPS, SUR_GUIDANCE: Compare's defaults and what Vote uses [the preset's
  default_steps/default_guidance attributes, else PRESET_DEFAULTS below]
- SUR_MAX_STEPS: the most steps a visitor may ask for [50]
- SUR_MAX_PROMPT_CHARS: longest prompt accepted [500]
- SUR_VOTES_PER_MIN, SUR_VOTES_PER_DAY: per voter, rolling windows [30, 1000]
- SUR_PAIRS_PER_MIN, SUR_PAIRS_PER_DAY: new blind pairs per voter, rolling windows [30, 2000]
- SUR_TRUSTED_PROXIES: whose X-Forwarded-For is believed: a hop count or a comma list of
  addresses/CIDRs (identity.py) [1 hop on a Hugging Face Space (SPACE_ID set), else nobody]
- SUR_OAUTH: Hugging Face sign-in (gr.LoginButton) as the voter identity, 1 or 0 [1 on a Space
  with `hf_oauth: true` (OAUTH_CLIENT_ID set), else 0]
- SUR_REQUIRE_LOGIN: with SUR_OAUTH, only signed-in voters get pairs and vote [0]
- SUR_MODE: "studio" (all tabs) or "survey" (Vote and Results only, no /generate) [studio]
- SUR_SURVEY_INSTRUCTIONS: the survey's instructions, Markdown text or a path to a file [survey.py]
- SUR_REVEAL: show the sides after each vote, 1 or 0 [1 in studio mode, 0 in survey mode]
- SUR_JUDGE: automatic per-image checks at pair time: auto (the toy judge for toy presets), toy
  or off [auto]
- SUR_CACHE_MAX_AGE_S: Gradio's cached images and files older than this are deleted [3600]
- SUR_BATTLE_MAX_AGE_S: a pair older than this can no longer be voted on [86400]
- SUR_SQLITE_SYNC: SQLite synchronous, NORMAL or FULL, WAL in both; see votes.py [NORMAL]
- SUR_SESSION_SALT: server salt of the voter keys [random, kept in <data dir>/salt]
- SUR_SYNC_REPO, HF_TOKEN, SUR_SYNC_EVERY_MIN: optional vote export to an HF dataset repo via
  CommitScheduler; off without both repo and token [off, none, 10]
- SUR_QUEUE_MAX: most requests waiting in the queue [64]
- SUR_GPU_DURATION: seconds asked of ZeroGPU per generation [60]
- GRADIO_SERVER_NAME, GRADIO_SERVER_PORT: where `python app.py` serves [0.0.0.0, 7860]
- SUR_TORCH_THREADS, SUR_LOG_LEVEL: read by app.py's main() [torch's default, INFO]
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

log = logging.getLogger("surlib.app")

# App defaults per preset; they win over the preset's own (eval) defaults because an interactive
# click must be quick: tiny is a random plumbing model (noise at any step count), so 2 steps
# (what a click costs: docs/app.md, Bench); SD presets trade the paper's 50 steps for 25.
PRESET_DEFAULTS: dict[str, tuple[int, float]] = {
    "tiny": (2, 5.0),
    "sd15": (25, 7.5),
    "sd21": (25, 7.5),
}
FALLBACK_DEFAULTS = (25, 7.5)
SPACES_DATA = Path("/data")


class ConfigError(ValueError):
    """A setting has a value the app cannot use (the message names the variable)."""


def default_preset_name() -> str:
    """The library's offline default: "toy" once its weights are in assets/, else "tiny"."""
    from ..presets import default_preset  # imports torch; only called when no SUR_PRESET is set

    return default_preset()


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("SUR_DATA_DIR"):
        return Path(env["SUR_DATA_DIR"]).expanduser()
    if SPACES_DATA.is_dir() and os.access(SPACES_DATA, os.W_OK):
        return SPACES_DATA / "sur-studio"  # Spaces persistent storage survives restarts
    return Path("outputs") / "sur-studio"


_KIND_WORD = {int: "an integer", float: "a number"}
MODES = ("studio", "survey")
JUDGES = ("auto", "toy", "off")
# Hugging Face Spaces put one proxy in front of the app: its peer address is the proxy's, and the
# last X-Forwarded-For entry is the one that proxy appended (docs/app.md, Voter identity).
SPACES_PROXY_HOPS = 1
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(env, name, default):
    """env[name] read as a yes/no setting; `default` when unset or empty."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (or true/false, yes/no, on/off), got {env.get(name)!r}")


def _number(env, name, default, lo, kind=int):
    """env[name] read as `kind` (int or float), at least `lo`; `default` when unset or empty."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {_KIND_WORD[kind]}, got {raw!r}") from None
    if value < lo:
        raise ConfigError(f"{name} must be at least {lo}, got {value}")
    return value


@dataclass(frozen=True)
class AppConfig:
    preset: str
    data_dir: Path
    runs_dir: Path = Path("runs")
    suites_dir: Path = Path("assets/suites")
    vote_suites: tuple[str, ...] = ()
    steps: int | None = None          # None: the preset's default
    guidance: float | None = None
    max_steps: int = 50
    max_prompt_chars: int = 500
    votes_per_minute: int = 30
    votes_per_day: int = 1000
    pairs_per_minute: int = 30
    pairs_per_day: int = 2000
    trusted_proxies: str = ""         # identity.ProxyTrust.parse
    oauth: bool = False
    require_login: bool = False
    mode: str = "studio"
    survey_instructions: str | None = None   # None: survey.DEFAULT_INSTRUCTIONS
    reveal: bool | None = None        # None: on in studio mode, off in survey mode
    judge: str = "auto"
    cache_max_age_s: int = 3600
    battle_max_age_s: float = 86400.0
    sqlite_synchronous: str = "NORMAL"
    sync_repo: str | None = None
    sync_every_min: float = 10.0
    hf_token: str | None = field(default=None, repr=False)
    session_salt: str | None = field(default=None, repr=False)
    queue_max_size: int = 64
    gpu_duration: int = 60
    server_name: str = "0.0.0.0"
    server_port: int = 7860

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AppConfig":
        env = os.environ if env is None else env
        sync = env.get("SUR_SQLITE_SYNC", "NORMAL").strip().upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError(f"SUR_SQLITE_SYNC must be FULL, NORMAL or EXTRA, got {sync!r}")
        suites = tuple(s.strip() for s in env.get("SUR_VOTE_SUITES", "").split(",") if s.strip())
        on_space = bool(env.get("SPACE_ID"))
        mode = env.get("SUR_MODE", "studio").strip().lower() or "studio"
        judge = env.get("SUR_JUDGE", "auto").strip().lower() or "auto"
        trusted = env.get("SUR_TRUSTED_PROXIES")
        if trusted is None:
            trusted = str(SPACES_PROXY_HOPS) if on_space else ""
        return cls(
            preset=env.get("SUR_PRESET") or default_preset_name(),
            data_dir=default_data_dir(env),
            runs_dir=Path(env.get("SUR_RUNS_DIR", "runs")),
            suites_dir=Path(env.get("SUR_SUITES_DIR", "assets/suites")),
            vote_suites=suites,
            steps=_number(env, "SUR_STEPS", None, 1),
            guidance=_number(env, "SUR_GUIDANCE", None, 0.0, float),
            max_steps=_number(env, "SUR_MAX_STEPS", 50, 1),
            max_prompt_chars=_number(env, "SUR_MAX_PROMPT_CHARS", 500, 1),
            votes_per_minute=_number(env, "SUR_VOTES_PER_MIN", 30, 1),
            votes_per_day=_number(env, "SUR_VOTES_PER_DAY", 1000, 1),
            pairs_per_minute=_number(env, "SUR_PAIRS_PER_MIN", 30, 1),
            pairs_per_day=_number(env, "SUR_PAIRS_PER_DAY", 2000, 1),
            trusted_proxies=trusted,
            oauth=_flag(env, "SUR_OAUTH", on_space and bool(env.get("OAUTH_CLIENT_ID"))),
            require_login=_flag(env, "SUR_REQUIRE_LOGIN", False),
            mode=mode,
            survey_instructions=env.get("SUR_SURVEY_INSTRUCTIONS") or None,
            reveal=_flag(env, "SUR_REVEAL", None),
            judge=judge,
            cache_max_age_s=_number(env, "SUR_CACHE_MAX_AGE_S", 3600, 60),
            battle_max_age_s=_number(env, "SUR_BATTLE_MAX_AGE_S", 86400.0, 1.0, float),
            sqlite_synchronous=sync,
            sync_repo=env.get("SUR_SYNC_REPO") or None,
            sync_every_min=_number(env, "SUR_SYNC_EVERY_MIN", 10.0, 0.1, float),
            hf_token=env.get("HF_TOKEN") or None,
            session_salt=env.get("SUR_SESSION_SALT") or None,
            queue_max_size=_number(env, "SUR_QUEUE_MAX", 64, 1),
            gpu_duration=_number(env, "SUR_GPU_DURATION", 60, 1),
            server_name=env.get("GRADIO_SERVER_NAME", "0.0.0.0"),
            server_port=_number(env, "GRADIO_SERVER_PORT", 7860, 0),
        )

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"SUR_MODE must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.judge not in JUDGES:
            raise ConfigError(f"SUR_JUDGE must be one of {', '.join(JUDGES)}, got {self.judge!r}")
        from .identity import ProxyTrust, TrustError

        try:
            ProxyTrust.parse(self.trusted_proxies)
        except TrustError as e:
            raise ConfigError(str(e)) from None
        if self.require_login and not self.oauth:
            raise ConfigError("SUR_REQUIRE_LOGIN=1 needs SUR_OAUTH=1 (there is no sign-in without it)")

    # ------------------------------------------------------------------ derived
    @property
    def survey(self) -> bool:
        return self.mode == "survey"

    @property
    def reveal_sides(self) -> bool:
        """Whether a vote's answer names the sides: yes in the studio, no in a survey (a voter
        shown the sides learns the adapter's look, and the next votes are no longer blind)."""
        return (not self.survey) if self.reveal is None else self.reveal

    @property
    def proxy_trust(self):
        from .identity import ProxyTrust

        return ProxyTrust.parse(self.trusted_proxies)

    @property
    def delete_cache(self) -> tuple[int, int]:
        """gr.Blocks(delete_cache=(every, age)): Gradio's own cleanup of its cached files."""
        return (min(600, self.cache_max_age_s), self.cache_max_age_s)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "votes.sqlite"

    @property
    def export_dir(self) -> Path:
        """Append-only JSONL vote exports, the folder a CommitScheduler would push."""
        return self.data_dir / "export"

    @property
    def sync_enabled(self) -> bool:
        return bool(self.sync_repo and self.hf_token)

    def generation_defaults(self, preset_obj=None) -> tuple[int, float]:
        """(steps, guidance): env first, then PRESET_DEFAULTS, then the preset's own defaults."""
        own = (getattr(preset_obj, "default_steps", None), getattr(preset_obj, "default_guidance", None))
        steps, guidance = PRESET_DEFAULTS.get(self.preset, (own[0] or FALLBACK_DEFAULTS[0],
                                                            own[1] or FALLBACK_DEFAULTS[1]))
        steps = min(self.steps or steps, self.max_steps)
        return steps, (self.guidance if self.guidance is not None else guidance)

    def salt(self) -> str:
        """The server salt of voter keys: SUR_SESSION_SALT, else one kept in the data dir.

        Kept in a file (mode 0600) so that one voter's key stays the same across restarts
        (rate limits and "your votes" keep counting); never shown on the page."""
        if self.session_salt:
            return self.session_salt
        path = self.data_dir / "salt"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fresh = secrets.token_hex(32)
        try:  # O_EXCL: two processes starting at once agree on one salt
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(fresh)
                f.flush()
                os.fsync(f.fileno())
            return fresh
        except FileExistsError:
            return path.read_text().strip()


def gpu_decorator(duration: int = 60) -> Callable[[Callable], Callable]:
    """`spaces.GPU(duration=...)` on ZeroGPU Spaces (when the `spaces` package imports), else identity."""
    try:
        import spaces  # type: ignore
    except Exception:  # not on Spaces: a no-op
        return lambda fn: fn
    if not callable(getattr(spaces, "GPU", None)):
        # e.g. this repository's own spaces/ folder imported as a namespace package: the real
        # `spaces` package (a regular package) would have won over it had it been installed.
        return lambda fn: fn
    log.info("spaces package found: generation runs under @spaces.GPU(duration=%s)", duration)
    return spaces.GPU(duration=duration)


__all__ = ["AppConfig", "ConfigError", "gpu_decorator", "default_data_dir", "default_preset_name",
           "PRESET_DEFAULTS", "MODES", "JUDGES", "SPACES_PROXY_HOPS"]
