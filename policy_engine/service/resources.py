"""What requests share: the settings, the store and the model, opened on first use."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import Request

from policy_engine.config import Settings
from policy_engine.store.accounts import Accounts


class Resources:
    """The store is opened on first use, so the service starts, and says it is not ready,
    while the database is down; the model is loaded by the first request that needs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._store: Any = None
        self._models: Any = None

    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from policy_engine.store import Store

                self._store = Store.open(self.settings.db)
            return self._store

    def accounts(self) -> Accounts:
        return Accounts(self.store())

    def models(self) -> Any:
        with self._lock:
            if self._models is None:
                from policy_engine.models.provider import ModelProvider

                self._models = ModelProvider.from_settings(self.settings)
            return self._models

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def resources(request: Request) -> Resources:
    return request.app.state.engine  # type: ignore[no-any-return]
