"""Settings, in order of precedence: defaults < settings file < environment < flags.

The settings file is TOML or YAML (by its suffix): ``--config FILE``, else
``$POLICY_ENGINE_CONFIG``, else ``./policy-engine.toml`` or ``./policy-engine.yaml`` if
present; its keys may sit under a ``policy_engine`` section. Environment variables are
``POLICY_ENGINE_<NAME>`` (e.g. ``POLICY_ENGINE_MODEL``, ``POLICY_ENGINE_DB``); a list
is written with spaces or commas (``POLICY_ENGINE_INCLUDE="*.mp4 *.mov"``), except
``POLICY_ENGINE_INGEST``, whose folders are separated like ``PATH`` (``:``). Each value
remembers where it came from, so a user can see why a setting has the value it has
(``policy-engine config show``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from policy_engine.errors import ConfigError
from policy_engine.media.formats import VIDEO_PATTERNS
from policy_engine.models.checkpoint import DEFAULT_MODEL
from policy_engine.policy.choices import did_you_mean

ENV_PREFIX = "POLICY_ENGINE_"
DEFAULT_CONFIG_FILES = ("policy-engine.toml", "policy-engine.yaml", "policy-engine.yml")
DEFAULT_DB_URL = "sqlite:///policy-engine.sqlite"  # a file in the working folder
# The rule sets shipped with the package (package data): what applies when no rules are
# configured, wherever the command is run from.
SHIPPED_RULES = Path(__file__).resolve().parent / "rules"


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    runtime: str = "auto"  # of the image tower: auto | torch | openvino
    fps: float = 2.0
    sampling: str = "fps"  # fps | all | keyframes | scenes
    framing: str = "letterbox"  # letterbox | tiles | center | squash
    batch_size: int = 32
    interval: float = 10.0  # seconds per dominant-label interval
    # fps sampling: skip non-reference frames when decoding (faster; a sample may be a frame
    # or two further from its target). Needs pse = false and scenes = false.
    fast_decode: bool = False
    # X-CLIP, for categories with `model: xclip`: a hub id or a checkpoint folder
    xclip_model: str = "microsoft/xclip-base-patch32"
    # detector classes hidden in evidence (nudity): also keep each such thumbnail
    # unpixelated, shown only in the app, only to reviewers logged in there who ask
    reveal_hidden_evidence: bool = False
    # the photosensitivity (flash and pattern) check on every frame of each scan
    pse: bool = True
    pse_area: str = "regions"  # regions | frame (as IRIS) | wcag-field
    pse_display_peak: float = 200.0  # cd/m² of the display the luminance is judged for
    # scene (shot) detection on every frame of each scan (PySceneDetect, same decode)
    scenes: bool = True
    scene_detector: str = "content"  # content | adaptive | threshold
    scene_threshold: float = 0.0  # 0: the default (content 27, adaptive 3, threshold 12)
    # search over stored embeddings: exact | hnsw | pgvector; the exact and hnsw caches live
    # in search_cache (empty: beside a SQLite database, else ./policy-engine-search)
    search_backend: str = "exact"
    search_cache: str = ""
    rules: str = str(SHIPPED_RULES)  # rule file or folder of rule files
    db: str = DEFAULT_DB_URL  # SQLAlchemy URL: SQLite file or postgresql://…
    reports: str = "reports"  # folder the HTML reports are written to
    # where scans run: local (this process) | ray (the actors of a Ray cluster, one per
    # accelerator, sharing a PostgreSQL database); the cluster: empty starts Ray on this
    # machine, auto joins the cluster this node belongs to, or ray://head:10001
    executor: str = "local"
    ray_address: str = ""
    ray_workers: int = 0  # actors; 0: one per GPU or HPU in the cluster, else per CPU share
    ray_cpus_per_worker: float = 1.0  # CPUs each actor reserves (decode, and CPU inference)
    # actors sharing one GPU or Gaudi card: each decodes on CPUs of its own, so a node
    # whose accelerator outruns one decoder keeps it busy with several
    ray_workers_per_accelerator: int = 1
    # -- nightly ingest (policy-engine schedule) --
    ingest: tuple[str, ...] = ()  # folders watched for new trailers
    include: tuple[str, ...] = VIDEO_PATTERNS  # the same list `scan FOLDER` uses
    exclude: tuple[str, ...] = ("*.part", "*.partial", "*.tmp", "*.crdownload", "~*")
    recursive: bool = True
    outside_links: bool = False  # follow symbolic links that lead out of an ingest folder
    settle_seconds: float = 30.0  # size and mtime unchanged across this period …
    quiet_seconds: float = 60.0  # … and not modified for this long, before a scan
    settle_wait: float = 300.0  # how long one run waits for files still being written
    max_attempts: int = 3  # failures before a file is quarantined
    retry_backoff: float = 300.0  # seconds before the first retry; doubles each time
    claim_timeout: float = 600.0  # a worker silent this long is presumed dead
    heartbeat: float = 30.0  # seconds between a worker's heartbeats
    schedule: str = "0 2 * * *"  # cron: minute hour day month weekday
    poll: float = 0.0  # seconds between extra polls of the folders; 0: nightly only
    timezone: str = "local"  # of the schedule: an IANA name, or the machine's zone
    misfire_grace: float = 3600.0  # a run missed by less than this still happens (0: any)
    log_format: str = "auto"  # auto (human on a terminal, else JSON lines) | human | json
    secure_cookies: bool = False  # session cookies only over HTTPS (set when behind TLS)
    allowed_hosts: tuple[str, ...] = ()  # Host headers the service answers (none: any)
    # single sign-on by a reverse proxy: the user named in this header (e.g. X-Remote-User;
    # empty: off), believed only from these proxy addresses
    remote_user_header: str = ""
    trusted_proxies: tuple[str, ...] = ()
    # analysis jobs through the API: server-side paths must lie under one of these roots
    # (none: paths are refused); uploads are spooled here, at most this big
    job_roots: tuple[str, ...] = ()
    job_spool: str = "policy-engine-jobs"
    upload_max_mb: float = 4096.0
    # job webhooks: only to these hosts (none: webhooks refused, so that a client cannot
    # make the workers call internal addresses), signed with this secret (HMAC-SHA256)
    webhook_hosts: tuple[str, ...] = ()
    webhook_signing_key: str = ""
    # why a reviewer overrules: the codes an override may give (required through the API)
    override_reasons: tuple[str, ...] = (
        "model-error", "context", "stylised-or-fictional", "brief-or-incidental",
        "editorial-judgement", "other",
    )  # fmt: skip
    # the review app: a change of level needs a second reviewer's confirmation (four
    # eyes); how long a reviewer's claim on an asset lasts; the share of the engine's
    # unrestricted verdicts sampled into the review queue for quality control
    four_eyes: bool = False
    review_claim_minutes: float = 30.0
    review_sample: float = 0.02
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")

    def rules_note(self) -> str | None:
        """What to tell the user when the shipped rule sets apply (nothing configured)."""
        if self.source_of("rules") != "default":
            return None
        return (
            f"rules: the shipped rule sets ({self.rules}); set `rules` in the settings file,"
            " POLICY_ENGINE_RULES or --rules for your own"
        )


_CONVERTERS = {f.name: f.type for f in fields(Settings) if f.name != "sources"}
_PATH_LISTS = {"ingest", "job_roots"}  # separated by os.pathsep in the environment


def _as_list(name: str, value: Any, origin: str) -> tuple[str, ...]:
    if isinstance(value, str):
        if origin.startswith("environment"):
            separator = os.pathsep if name in _PATH_LISTS else None
            parts = value.split(separator) if separator else value.replace(",", " ").split()
        else:
            parts = [value]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        raise ValueError
    if not all(isinstance(p, str) for p in parts):
        raise ValueError
    return tuple(p.strip() for p in parts if p.strip())


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _convert(name: str, value: Any, origin: str) -> Any:
    kind = _CONVERTERS[name]
    try:
        if kind in ("tuple[str, ...]",):
            return _as_list(name, value, origin)
        if kind in ("bool", bool):
            return _as_bool(value)
        if isinstance(value, bool | list | dict):
            raise ValueError
        if kind in ("float", float):
            return float(value)
        if kind in ("int", int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        kind = {"tuple[str, ...]": "list of strings"}.get(str(kind), kind)
        raise ConfigError(f"{origin}: {name} = {value!r} is not a valid {kind}") from exc


def _config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    return next((Path(p) for p in DEFAULT_CONFIG_FILES if Path(p).is_file()), None)


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() in (".yaml", ".yml"):
        from policy_engine.policy.yamlsafe import YamlRejected, compose, to_python

        try:
            node = compose(text, str(path))
        except YamlRejected as exc:
            raise ConfigError(str(exc.problem)) from None
        return to_python(node) if node is not None else {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"config file {path}: nested too deeply to be settings") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = _parse(path, path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected settings (name: value), not a list")
    section = data.get("policy_engine", data)
    unknown = sorted(set(section) - set(_CONVERTERS))
    if unknown:
        named = ", ".join(f"{name!r}{did_you_mean(name, _CONVERTERS)}" for name in unknown)
        raise ConfigError(
            f"config file {path}: unknown setting(s) {named};"
            f" known: {', '.join(sorted(_CONVERTERS))}"
        )
    return section


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Effective settings; ``flags`` with value None are treated as not given."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = _config_file(config_file, env)
    if path is not None:
        for name, value in _read_file(path).items():
            values[name] = _convert(name, value, f"config file {path}")
            sources[name] = f"file {path}"
    for name in _CONVERTERS:
        variable = ENV_PREFIX + name.upper()
        if env.get(variable):
            values[name] = _convert(name, env[variable], f"environment {variable}")
            sources[name] = f"env {variable}"
    for name, value in (flags or {}).items():
        if value is not None and name in _CONVERTERS:
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}")
            sources[name] = "flag"
    return replace(Settings(), **values, sources=sources)
