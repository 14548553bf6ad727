"""Connection URLs: scheme mapping, token encoding, redaction."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given, strategies as st

from trio_ws_bus import redact_url
from trio_ws_bus._url import resolve_target

PATH = "/api/v2/ws"


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://example.test", "ws://example.test/api/v2/ws?token=t"),
        ("https://example.test", "wss://example.test/api/v2/ws?token=t"),
        ("ws://example.test:8080/", "ws://example.test:8080/api/v2/ws?token=t"),
        ("wss://example.test/custom/path", "wss://example.test/custom/path?token=t"),
        ("HTTPS://example.test:443", "wss://example.test/api/v2/ws?token=t"),
        ("http://[::1]:9000", "ws://[::1]:9000/api/v2/ws?token=t"),
    ],
)
def test_scheme_and_path(base: str, url: str) -> None:
    """Http becomes ws, https becomes wss, an empty path gets the default."""
    assert resolve_target(base, "t", path=PATH).url == url


def test_other_query_parameters_stay_and_old_token_goes() -> None:
    """Query parameters are kept; a token in the base URL is replaced."""
    target = resolve_target("https://x.test/ws?tenant=a&token=old&b=", "new", path=PATH)
    assert target.resource == "/ws?tenant=a&b=&token=new"


@pytest.mark.parametrize(
    "base", ["ftp://x.test", "x.test", "http://", "http://x.test:99999"]
)
def test_unusable_urls_are_value_errors(base: str) -> None:
    """Unknown schemes, missing hosts and bad ports are rejected up front."""
    with pytest.raises(ValueError, match="url"):
        resolve_target(base, "t", path=PATH)


@given(st.text(min_size=1))
def test_token_round_trips_through_percent_encoding(token: str) -> None:
    """Any token, including + / = & # % and spaces, decodes back exactly."""
    target = resolve_target("https://x.test", token, path=PATH)
    query = target.resource.partition("?")[2]
    assert "#" not in query
    assert " " not in query
    assert urllib.parse.parse_qs(query, keep_blank_values=True)["token"] == [token]


@given(st.text(min_size=1, alphabet=st.characters(blacklist_categories=["Cs"])))
def test_repr_and_redacted_url_never_show_the_token(token: str) -> None:
    """The target's repr and redacted URL hide raw and encoded token alike."""
    target = resolve_target("https://x.test/?a=1", token, path=PATH)
    encoded = urllib.parse.quote(token, safe="")
    shown = repr(target) + target.redacted_url
    assert "token=***" in shown
    assert f"token={encoded}" not in shown


def test_redact_url_leaves_other_parameters() -> None:
    """Only token values are replaced."""
    assert (
        redact_url("wss://h/p?a=1&token=abc&tokenx=2")
        == "wss://h/p?a=1&token=***&tokenx=2"
    )
    assert redact_url("wss://h/p") == "wss://h/p"
