"""HTML audit reports (Jinja2, autoescaped): one self-contained file per asset.

This is the first, plain version of the report: verdict, reasons with measured values,
evidence thumbnails and provenance. Everything that came from outside (file names,
prompts, rule text, reviewer text) goes through autoescaping.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from policy_engine import __version__
from policy_engine.media.timecode import format_timecode

if TYPE_CHECKING:
    from policy_engine.pipeline.scan import ScanOutcome
    from policy_engine.store import Store

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("policy_engine.reporting", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["timecode"] = format_timecode
    env.filters["percent"] = lambda v: f"{100 * v:.1f}%"
    return env


def report_name(path: str, content_sha256: str | None) -> str:
    """A file name that is safe on every file system, whatever the asset was called."""
    stem = _SAFE.sub("_", Path(path).stem).strip("._")[:80] or "asset"
    digest = (content_sha256 or "").removeprefix("sha256:")[:12] or "unhashed"
    return f"{stem}-{digest}.html"


def write_asset_report(store: Store, outcome: ScanOutcome, directory: Path) -> Path:
    """Render the report of one scanned asset into ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    scan = store.scan(outcome.scan_id) if outcome.scan_id is not None else None
    frames = {e.frame for _, d in outcome.decisions for r in d.reasons for e in r.evidence}
    thumbs = store.thumbnails(outcome.scan_id, frames) if scan is not None and frames else {}
    images = {
        i: "data:image/jpeg;base64," + base64.b64encode(b).decode() for i, b in thumbs.items()
    }
    html = (
        _environment()
        .get_template("asset.html")
        .render(
            outcome=outcome,
            name=Path(outcome.path).name,
            scan=scan,
            verdict=outcome.verdict,
            images=images,
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
            version=__version__,
        )
    )
    target = directory / report_name(outcome.path, outcome.content_sha256)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)  # a reader never sees half a report
    return target
