"""``policy-engine search "a person smoking"``: ranked frames (or scenes) of every asset's
current scan, from the stored embeddings (see ``policy_engine.pipeline.search``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

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
    parse_since,
    settings_for,
)
from policy_engine.cli.records import _no_asset
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.escaping import visible_controls
from policy_engine.media.timecode import format_timecode
from policy_engine.search import DEFAULT_LIMIT, DEFAULT_WEIGHT


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[
        str | None, typer.Argument(help='What to look for, e.g. "a person smoking".')
    ] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="A picture to find (JPEG, PNG, …).")
    ] = None,
    weight: Annotated[
        float, typer.Option(help="With a text and an image: the text's share of the query.")
    ] = DEFAULT_WEIGHT,
    like: Annotated[
        str | None,
        typer.Option("--like", help="SCAN:FRAME: more like this stored frame (no model)."),
    ] = None,
    scenes: Annotated[
        bool, typer.Option("--scenes/--frames", help="Rank scenes instead of frames.")
    ] = False,
    asset: Annotated[
        list[str] | None,
        typer.Option("--asset", help="Only this asset (id, hash prefix or path); repeatable."),
    ] = None,
    verdict: Annotated[
        str | None, typer.Option(help="Only assets with this verdict in force.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only assets scanned since (2026-11-01).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Hits to show.")] = DEFAULT_LIMIT,
    thumbnails: Annotated[
        Path | None,
        typer.Option("--thumbnails", help="Write each hit's picture (JPEG) into this folder."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="exact | hnsw | pgvector \\[default: exact]")
    ] = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Which trailers show this? Frames (or scenes) of every asset's latest scan ranked by
    similarity to a text, a picture, both, or a stored frame: answered from the embeddings
    stored at scan time (no video is opened; the image model loads only for --image)."""
    from policy_engine.pipeline.search import SearchRequest
    from policy_engine.pipeline.search import search as search_store

    try:
        settings = settings_for(
            ctx, {"model": model, "device": device, "search_backend": backend}, config
        )
        picture = _read_image(image) if image is not None else None
        store = open_store(settings)
        try:
            request = SearchRequest(
                text=query, image=picture, like=_frame_ref(like) if like else None,
                weight=weight, kind="scenes" if scenes else "frames",
                asset_ids=_asset_ids(store, asset) if asset else None,
                verdict=verdict, since=parse_since(since), limit=limit,
            )  # fmt: skip
            result = search_store(store, model_provider(settings), settings, request)
            written = _write_thumbnails(store, result.hits, thumbnails) if thumbnails else {}
        finally:
            store.close()
    except PolicyEngineError as exc:
        raise fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps(_payload(query, result, written), indent=2) + "\n")
        return
    _print(query, like, result, written)


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--image {path}: {exc.strerror or exc}") from None


def _frame_ref(text: str) -> tuple[int, int]:
    scan, sep, frame = text.partition(":")
    if not sep or not scan.strip().isdigit() or not frame.strip().isdigit():
        raise ConfigError(f"--like {text!r}: write SCAN:FRAME, e.g. 12:40 (see `show`)")
    return int(scan), int(frame)


def _asset_ids(store: Any, refs: list[str]) -> tuple[int, ...]:
    ids: list[int] = []
    for ref in refs:
        found = store.find_assets(ref)
        if not found:
            raise _no_asset(ref)
        ids.extend(a.id for a in found)
    return tuple(dict.fromkeys(ids))


def _write_thumbnails(store: Any, hits: list[Any], folder: Path) -> dict[int, str]:
    """Each hit's picture as a JPEG in ``folder``: rank -> path."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = {}
        for hit in hits:
            picture = store.thumbnails(hit.scan_id, [hit.frame]).get(hit.frame)
            if picture is not None:
                target = folder / f"scan{hit.scan_id}-frame{hit.frame}.jpg"
                target.write_bytes(picture)
                written[hit.rank] = str(target.resolve())
        return written
    except OSError as exc:
        raise ConfigError(f"--thumbnails {folder}: {exc.strerror or exc}") from None


def _payload(query: str | None, result: Any, written: dict[int, str]) -> dict[str, Any]:
    return {
        "query": query,
        "kind": result.kind,
        "backend": result.backend,
        "weights_sha256": result.weights_sha256,
        "searched_assets": result.searched_assets,
        "other_weights": result.other_weights,
        "hits": [{**h.to_dict(), "thumbnail": written.get(h.rank)} for h in result.hits],
    }


def _print(query: str | None, like: str | None, result: Any, written: dict[int, str]) -> None:
    asked = repr(visible_controls(query)) if query else f"frame {like}" if like else "the image"
    weights = result.weights_sha256.removeprefix("sha256:")[:12]
    lines = [
        f"{len(result.hits)} {result.kind} like {asked} in {result.searched_assets} asset(s)"
        f" ({result.backend} search, weights {weights})"
    ]
    for hit in result.hits:
        when = format_timecode(hit.time)
        if hit.end is not None:
            when += f" – {format_timecode(hit.end)}"
        name = visible_controls(Path(hit.path).name)
        lines.append(
            f"  {hit.rank:>3}. {hit.score:.3f}  {name} (asset {hit.asset_id})  {when}"
            f"  scan {hit.scan_id}:{hit.frame}"
            + (f"  {written[hit.rank]}" if hit.rank in written else "")
        )
    if result.other_weights:
        count = sum(result.other_weights.values())
        listed = ", ".join(w.removeprefix("sha256:")[:12] for w in result.other_weights)
        lines.append(
            f"  not searched: {count} asset(s) whose latest scan used other model weights"
            f" ({listed}); scan them with this model, or search with that one (--model)"
        )
    out.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
