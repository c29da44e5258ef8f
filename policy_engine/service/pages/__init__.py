"""The review app: server-rendered HTML pages (Jinja2, the report's own partials) beside
the JSON API, one module per page; the little JavaScript there is lives in static/."""

from policy_engine.service.pages import (
    asset,
    audit,
    catalogue,
    login,
    queue,
    rulesets,
    search,
    static,
)

PAGES = (static, login, catalogue, search, asset, queue, audit, rulesets)
