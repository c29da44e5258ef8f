"""The catalogue: assets with their verdict in force, filtered and paged by a cursor.

Paging is by asset id, so a page is stable while assets are added. Filters on what is
derived (the verdict in force after overrides, tags, rules fired) are applied to each
batch read; one request reads at most ``budget`` assets and, if it filled no page by
then, answers with what it found and the cursor to go on from, so a rare filter never
makes one request walk the whole archive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policy_engine.policy.evaluate import combine
from policy_engine.store import AssetRow, Store

BATCH = 200


@dataclass(frozen=True)
class AssetFilter:
    verdict: str | None = None  # the level in force, e.g. post-watershed
    review: bool | None = None  # review still pending (True) or settled/none (False)
    tag: str | None = None
    ruleset: str | None = None  # judged by this rule set
    rule: str | None = None  # this rule fired (in the latest decision)
    name: str | None = None  # text in any path it was seen at
    scanned_since: datetime | None = None
    scanned_until: datetime | None = None
    territory: str | None = None  # with airs_at: may it air there then, as ruled now
    airs_at: datetime | None = None  # without a zone: local time in the territory


@dataclass(frozen=True)
class CataloguePage:
    items: list[dict[str, Any]]
    cursor: int | None  # where the next page starts; None at the end


def list_assets(
    store: Store, wanted: AssetFilter, *, after: int = 0, limit: int = 50, budget: int = 2000,
    newest_first: bool = False,
) -> CataloguePage:  # fmt: skip
    """A page of the catalogue after the cursor ``after`` (an asset id; 0: the start), in
    order of asset id (``newest_first``: descending). Each item has its verdict in force
    and one earliest slot per territory over its rule sets."""
    items: list[dict[str, Any]] = []
    read, last = 0, after
    rulesets: dict[str, Any] = {}  # parsed rule sets by hash, for slots and the filter
    order = {"name_contains": wanted.name, "newest_first": newest_first}
    more: bool | None = None  # an asset after the last one read
    while len(items) < limit and read < budget:
        # without filters on derived data every row read is kept: read no more than needed
        derived = any(v is not None for k, v in vars(wanted).items() if k != "name")
        batch = min(BATCH if derived else limit - len(items), budget - read)
        # one row more than the batch, unread: whether there is a next page
        rows = store.asset_rows(after=last, limit=batch + 1, **order)
        more, rows = len(rows) > batch, rows[:batch]
        if not rows:
            return CataloguePage(items, None)
        current = store.current_decisions([asset.id for asset in rows])
        _parse_rulesets(store, current.values(), rulesets)
        by_asset: dict[int, list[Any]] = {}
        for (asset_id, _), decision in current.items():
            by_asset.setdefault(asset_id, []).append(decision)
        for position, asset in enumerate(rows, 1):
            read, last = read + 1, asset.id
            decisions = by_asset.get(asset.id, [])
            item = _item(asset, decisions)
            if _matches(item, decisions, wanted) and _airs(decisions, wanted, rulesets):
                item["slots"] = _slots(decisions, rulesets)  # for the items kept only
                items.append(item)
                if len(items) == limit:
                    more = more or position < len(rows)
                    break
    if more is None:  # nothing read (no budget)
        more = store.any_asset_after(last, wanted.name, newest_first)
    return CataloguePage(items, last if more else None)


def _item(asset: AssetRow, decisions: list[Any]) -> dict[str, Any]:
    rulings = [d.ruled() for d in decisions]
    verdict = combine(rulings) if rulings else None
    return {
        "id": asset.id,
        "path": asset.path,
        "content_sha256": asset.content_sha256,
        "verdict": verdict,
        "rulesets": sorted(d.ruleset_name for d in decisions),
        "slots": [],
        "last_scanned": asset.last_scanned,
    }


def _slots(decisions: list[Any], rulesets: dict[str, Any]) -> list[dict[str, Any]]:
    """One earliest slot per territory over the asset's rule sets (see combined_slots)."""
    key = tuple(
        (d.ruleset_name, d.ruleset_sha256, d.ruled().schedule)
        for d in decisions
        if rulesets.get(d.ruleset_sha256) is not None  # None: a text no longer readable
    )
    if not key:
        return []
    slots = _SLOTS.get(key)
    if slots is None:
        slots = _combined_slots(key, rulesets)
        if all(sha in _PARSED for _, sha, _ in key):  # texts verified against their hash
            with _SLOTS_LOCK:  # requests run in threads
                _SLOTS[key] = slots
                while len(_SLOTS) > _SLOTS_KEPT:
                    _SLOTS.pop(next(iter(_SLOTS)))  # the oldest: dicts keep insertion order
    return [dict(slot) for slot in slots]  # copies: callers may add to an item's slots


# Slots depend only on (rule set text, level in force) pairs, and a catalogue of thousands
# of assets holds a handful of such combinations: computing them per asset was most of the
# cost of a catalogue page.
_SLOTS: dict[tuple[tuple[str, str, str], ...], list[dict[str, Any]]] = {}
_SLOTS_KEPT = 4096
_SLOTS_LOCK = threading.Lock()


def _combined_slots(
    key: tuple[tuple[str, str, str], ...], rulesets: dict[str, Any]
) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from policy_engine.policy.territory import combined_slots

    slots = combined_slots([
        (name, level, rulesets[sha].levels, rulesets[sha].territories)
        for name, sha, level in key
    ])  # fmt: skip
    return [asdict(slot) for slot in slots]


def _matches(item: dict[str, Any], decisions: list[Any], wanted: AssetFilter) -> bool:
    verdict = item["verdict"] or {}
    scanned = item["last_scanned"]
    checks = (
        wanted.verdict is None or verdict.get("schedule") == wanted.verdict,
        wanted.review is None or bool(verdict.get("review")) == wanted.review,
        wanted.tag is None or wanted.tag in verdict.get("tags", ()),
        wanted.ruleset is None or wanted.ruleset in item["rulesets"],
        wanted.rule is None or any(wanted.rule in d.fired for d in decisions),
        wanted.scanned_since is None or (scanned is not None and scanned >= wanted.scanned_since),
        wanted.scanned_until is None or (scanned is not None and scanned < wanted.scanned_until),
    )
    return all(checks)


# Rule sets parsed once per process: a text is immutable under its hash.
_PARSED: dict[str, Any] = {}


def _parse_rulesets(store: Store, decisions: Any, parsed: dict[str, Any]) -> None:
    from policy_engine.hashing import text_matches
    from policy_engine.policy.loader import parse_ruleset

    wanted = {d.ruleset_sha256 for d in decisions} - set(parsed)
    parsed.update({sha: _PARSED[sha] for sha in wanted if sha in _PARSED})
    for sha, (text, path) in store.ruleset_texts(wanted - set(parsed)).items():
        try:
            parsed[sha] = parse_ruleset(text, path)
        except Exception:  # noqa: BLE001 - a text this software no longer reads: no slots
            parsed[sha] = None
        if text_matches(text, sha) and len(_PARSED) < 1000:  # never cache an edited text
            _PARSED[sha] = parsed[sha]


def _airs(decisions: list[Any], wanted: AssetFilter, rulesets: dict[str, Any]) -> bool:
    """With a territory filter: every current decision whose rule set knows the territory
    lets the level in force air then (and at least one knows it)."""
    if wanted.territory is None or wanted.airs_at is None:
        return True
    from policy_engine.policy.territory import slot_permitted

    judged = False
    for decision in decisions:
        ruleset = rulesets.get(decision.ruleset_sha256)
        territory = next(
            (t for t in getattr(ruleset, "territories", ()) if t.name == wanted.territory), None
        )
        if territory is None:
            continue
        judged = True
        level = decision.ruled().schedule
        if level not in ruleset.levels or not slot_permitted(
            level, ruleset.levels, territory, wanted.airs_at
        ):
            return False
    return judged
