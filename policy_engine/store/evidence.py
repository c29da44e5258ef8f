"""Evidence pictures as they were, where a detector's hidden classes (nudity) were
pixelated: kept with a scan only where the ``reveal_hidden_evidence`` setting asks,
shown only in the app to reviewers logged in there, each showing recorded for the audit
log, and deletable (explicit material must not be kept for ever: ``db purge-revealed``).
Reports, exports and every other copy read the frames' pixelated thumbnails instead."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from policy_engine.store.repository import StoreFacet
from policy_engine.store.schema import RevealedPicture, RevealedView, Scan


class RevealedPictures(StoreFacet):
    def picture(self, scan_id: int, frame: int) -> bytes | None:
        with self._transaction() as s:
            query = select(RevealedPicture.jpeg).where(
                RevealedPicture.scan_id == scan_id, RevealedPicture.frame_index == frame
            )
            return s.scalar(query)

    def frames(self, scan_id: int) -> set[int]:
        """The frames of a scan kept as they were."""
        with self._transaction() as s:
            query = select(RevealedPicture.frame_index).where(RevealedPicture.scan_id == scan_id)
            return set(s.scalars(query))

    def record_view(self, user: str, scan_id: int, frame: int) -> None:
        """Who was shown which picture as it was, when (append-only)."""
        with self._transaction() as s:
            asset_id = s.scalar(select(Scan.asset_id).where(Scan.id == scan_id))
            s.add(RevealedView(user_name=user, scan_id=scan_id, frame_index=frame,
                               asset_id=asset_id))  # fmt: skip

    def held(self) -> tuple[int, int]:
        """How many pictures are kept as they were, and their bytes."""
        with self._transaction() as s:
            count, size = s.execute(
                select(func.count(), func.coalesce(func.sum(func.length(RevealedPicture.jpeg)), 0))
            ).one()
            return int(count), int(size)

    def purge(self, kept_before: datetime | None = None) -> int:
        """Delete the pictures kept as they were (those kept before ``kept_before``, or
        all); the pixelated thumbnails and the record of who saw what stay."""
        query = delete(RevealedPicture)
        if kept_before is not None:
            query = query.where(RevealedPicture.kept_at < kept_before)
        with self._transaction() as s:
            return int(s.execute(query).rowcount or 0)
