"""The review app's search page over HTTP, logged in through the login form: a description
ranks the frame built to match first and names what was not searched; "more like this"
follows a hit; a picture posted from the form finds the video it was cut from, at that
time; what cannot be searched is a page that says what to fix, never a crash."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape

import pytest
from fastapi.testclient import TestClient
from test_search import QUERY, archive, scanned  # noqa: F401 - fixtures

from policy_engine.store.accounts import Accounts
from policy_engine.store.synthetic import SYNTHETIC_MODEL

PASSWORD = "bob's long password!"


@contextmanager
def logged_in(store, settings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    from policy_engine.service.app import create_app

    Accounts(store).add_user("bob", "viewer", PASSWORD, by="test")
    with TestClient(create_app(settings)) as client:
        answer = client.post("/login", data={"name": "bob", "password": PASSWORD, "next": "/"},
                             follow_redirects=False)  # fmt: skip
        assert answer.status_code == 303, answer.text
        yield client


def hits(html: str) -> list[tuple[int, int]]:
    """(asset id, frame) of each hit, in rank order."""
    found = re.findall(r'<li data-asset="(\d+)" data-frame="(\d+)">', html)
    return [(int(a), int(f)) for a, f in found]


def similar_links(html: str) -> list[str]:
    return [unescape(u) for u in re.findall(r'<a href="([^"]+)">more like this</a>', html)]


def test_the_page_needs_a_login_and_is_in_the_navigation(archive) -> None:  # noqa: F811
    store, settings, _, _ = archive
    with logged_in(store, settings) as client:
        page = client.get("/search")
        assert page.status_code == 200
        assert '<a href="/search" aria-current="page">Search</a>' in page.text
        assert 'id="hits"' not in page.text  # the form alone
        client.cookies.clear()
        away = client.get("/search", params={"q": QUERY}, follow_redirects=False)
        assert away.status_code == 303 and away.headers["location"].startswith("/login?next=")


def test_a_description_ranks_the_matching_frame_first_and_more_like_this_follows(
    archive,  # noqa: F811 - a fixture
) -> None:
    store, settings, ids, _ = archive
    smoking_asset, smoking_scan = ids["smoking"]
    with logged_in(store, settings) as client:
        page = client.get("/search", params={"q": QUERY, "limit": 3})
        assert page.status_code == 200, page.text
        found = hits(page.text)
        assert len(found) == 3 and found[0] == (smoking_asset, 7)
        first = page.text[page.text.index('<li data-asset="') :]
        assert f'src="/api/v1/scans/{smoking_scan}/frames/7/thumbnail"' in first
        assert f'href="/assets/{smoking_asset}?t=3.500"' in first  # opens the player there
        assert "00:00:03.500" in first
        assert "1 asset(s) scanned with other weights" in page.text
        assert SYNTHETIC_MODEL.weights_sha256.split(":")[-1][:12] in page.text
        like = client.get(similar_links(page.text)[0])
        assert like.status_code == 200
        assert len(hits(like.text)) == 3 and (smoking_asset, 7) not in hits(like.text)
        assert f"like frame {smoking_scan}:7" in like.text
        filtered = client.get("/search", params={"q": QUERY, "verdict": "no-such-level"})
        assert filtered.status_code == 200 and "Nothing found among the assets" in filtered.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"like": "seven"}, "is not SCAN:FRAME"),
        ({"like": "²:1"}, "is not SCAN:FRAME"),  # a digit to str.isdigit, not to int()
        ({"like": "99999999999999999999999:1"}, "is not SCAN:FRAME"),  # no column holds it
        ({"like": "999:0"}, "scan 999 has no frame 0"),
        ({"q": QUERY, "since": "yesterday"}, "is not a date"),
    ],
)
def test_a_query_that_cannot_be_answered_says_what_to_fix(
    archive,  # noqa: F811 - a fixture
    params: dict[str, str],
    message: str,
) -> None:
    store, settings, _, _ = archive
    with logged_in(store, settings) as client:
        page = client.get("/search", params=params)
        assert page.status_code == 422
        assert message in unescape(page.text) and 'role="alert"' in page.text
        assert "<form" in page.text  # the form is still there to correct


def test_bad_uploads_are_refused_with_the_reason(archive) -> None:  # noqa: F811
    store, settings, _, _ = archive
    with logged_in(store, settings) as client:
        nothing = client.post("/search", data={"q": "x"}, files={"picture": ("", b"")})
        assert nothing.status_code == 422 and "Choose a picture" in nothing.text
        text = client.post("/search", files={"picture": ("notes.png", b"not a picture")})
        assert text.status_code == 422
        assert "could not be read as a picture" in unescape(text.text)
        plain = client.post("/search", data={"q": QUERY})  # urlencoded: no file can be in it
        assert plain.status_code == 415
        huge = client.post(
            "/search", content=b"x" * 64,
            headers={"Content-Type": "multipart/form-data; boundary=b",
                     "Content-Length": str(11 * 1024 * 1024)},
        )  # fmt: skip
        assert huge.status_code == 413  # refused from the header, before reading the body
        broken = client.post("/search", content=b"--b\r\nnonsense",
                             headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert broken.status_code == 422 and "Choose a picture" in broken.text  # no file in it


def _still(moving, seconds: float) -> bytes:  # type: ignore[no-untyped-def]
    import av

    with av.open(str(moving)) as container:
        frame = next(f for f in container.decode(video=0) if abs(f.time - seconds) < 1e-6)
        buffer = io.BytesIO()
        frame.to_image().save(buffer, "PNG")
    return buffer.getvalue()


def test_a_picture_from_the_form_finds_the_video_it_was_cut_from(scanned) -> None:  # noqa: F811
    store, settings, outcomes, moving = scanned
    picture = _still(moving, 3.0)
    with logged_in(store, settings) as client:
        page = client.post("/search", data={"limit": "3"},
                           files={"picture": ("still.png", picture, "image/png")})
        assert page.status_code == 200, page.text
        asset, frame = hits(page.text)[0]
        assert asset == outcomes["moving"].asset_id and frame == 6  # 3.0 s at 2 fps
        assert "3 frames like the picture" in page.text
        both = client.post(
            "/search", data={"q": "a red picture", "weight": "0.5", "kind": "scenes"},
            files={"picture": ("still.png", picture, "image/png")},
        )  # fmt: skip
        assert both.status_code == 200
        assert "like the picture and “a red picture”" in both.text
        assert re.search(r"scene \d+: 00:00:0\d\.\d{3} – 00:00:0\d\.\d{3}", both.text)
        bad_weight = client.post("/search", data={"weight": "lots"},
                                 files={"picture": ("still.png", picture, "image/png")})
        assert bad_weight.status_code == 422 and "is not a number" in bad_weight.text
