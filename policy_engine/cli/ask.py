"""``policy-engine ask ASSET "a person smoking"``: when, and for how long, from the stored
frames (see ``policy_engine.pipeline.ask``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from policy_engine.analysis.ask import DEFAULT_THRESHOLD
from policy_engine.cli.common import (
    ConfigOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    app,
    fail,
    model_provider,
    open_store,
    out,
    settings_for,
)
from policy_engine.cli.records import _no_asset
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.escaping import visible_controls
from policy_engine.media.timecode import format_timecode


@app.command()
def ask(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset id, content hash (prefix) or path.")],
    query: Annotated[str, typer.Argument(help='What to look for, e.g. "a person smoking".')],
    threshold: Annotated[
        float,
        typer.Option(
            help="Share of the probability the query must take from the generic 'none of"
            " these' prompts for a frame to count."
        ),
    ] = DEFAULT_THRESHOLD,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Does the asset show this, when first, for how long: answered from the frame
    embeddings stored at scan time with the text model alone (no video is opened)."""
    from policy_engine.pipeline.ask import ask as ask_store

    try:
        settings = settings_for(ctx, {"model": model, "device": device}, config)
        store = open_store(settings)
        try:
            found = store.find_assets(asset)
            if not found:
                raise _no_asset(asset)
            if len(found) > 1:
                ids = ", ".join(str(a.id) for a in found)
                raise ConfigError(f"{asset!r} matches assets {ids}; give one id")
            models = model_provider(settings)
            result = ask_store(store, models, found[0].id, query, threshold=threshold)
        finally:
            store.close()
    except PolicyEngineError as exc:
        raise fail(exc) from None
    if as_json:
        data = {
            "asset_id": result.asset_id,
            "path": result.path,
            "scan_id": result.scan_id,
            "model": result.model,
            "weights_sha256": result.weights_sha256,
            "other_weights": list(result.other_weights),
            **result.answer.to_dict(),
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    _print_answer(result)


def _print_answer(result) -> None:  # type: ignore[no-untyped-def]  # AskResult
    a = result.answer
    name = visible_controls(Path(result.path).name)
    lines = [
        f"{name} (asset {result.asset_id}, scan {result.scan_id}): {visible_controls(a.query)!r}"
    ]
    if a.present:
        lines.append(
            f"  yes: first seen at {format_timecode(a.first_seen)}, {a.total_seconds:.1f} s in"
            f" all ({a.share:.0%} of {a.end - a.start:.1f} s), longest run {a.longest_run:.1f} s"
        )
        for s in a.segments:
            lines.append(
                f"    {format_timecode(s.start)} – {format_timecode(s.end)}  peak {s.peak:.2f}"
                f" at {format_timecode(s.evidence_time)}"
            )
    else:
        peak = f" at {format_timecode(a.peak_time)}" if a.peak_time is not None else ""
        lines.append(f"  no: never above {a.threshold:g} (highest {a.peak:.2f}{peak})")
    lines.append(
        f"  {a.frames} stored frames; model {result.model}"
        f" (weights {result.weights_sha256.removeprefix('sha256:')[:12]}); threshold"
        f" {a.threshold:g} against {len(a.contrast)} generic 'none of these' prompts"
    )
    if result.other_weights:
        lines.append(f"  not used: {len(result.other_weights)} scan(s) made with other weights")
    out.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
