"""Connection URLs: scheme mapping, token encoding, redaction."""

from __future__ import annotations

import re
import traceback
import urllib.parse

import pytest
from hypothesis import given, strategies as st

from trio_ws_bus import redact_url
from trio_ws_bus._url import TokenNotText, resolve_target

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


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://h/p?token=abc==", "wss://h/p?token=***"),
        ("wss://h/p?a=1&token=abc==&b=x=y", "wss://h/p?a=1&token=***&b=x=y"),
        ("wss://h/p?token=abc?def&b=2", "wss://h/p?token=***&b=2"),
        ("wss://h/p?a=?&token=abc", "wss://h/p?a=?&token=***"),
        ("wss://h/p?token=abc#frag", "wss://h/p?token=***#frag"),
    ],
)
def test_redact_url_hides_the_whole_value(url: str, shown: str) -> None:
    """A raw =, a second ? and a fragment never let part of the token through."""
    assert redact_url(url) == shown


def test_a_token_that_is_not_text_fails_without_showing_it() -> None:
    """A lone surrogate (from os.environ) is a TokenNotText that holds no token."""
    token = "SECRET-\udcff-tok"
    with pytest.raises(TokenNotText) as raised:
        resolve_target("https://x.test", token, path=PATH)
    error = raised.value
    assert isinstance(error, ValueError)
    assert error.__cause__ is None
    assert error.__suppress_context__
    shown = "".join(traceback.format_exception(error)) + repr(error)
    assert "SECRET" not in shown
    assert "\\udcff" not in shown


@pytest.mark.parametrize(
    ("base", "error", "message"),
    [
        (b"http://x.test", TypeError, "url must be a str, got bytes"),
        ("ftp://x.test", ValueError, "url scheme must be http, https, ws or wss"),
        ("http://x.test:99999", ValueError, "url has an invalid port"),
        ("http://", ValueError, "url has no host"),
        ("http://user@x.test", ValueError, "url must not contain credentials"),
        ("http://:pw@x.test", ValueError, "url must not contain credentials"),
        ("http://x.test/#top", ValueError, "url must not contain a fragment"),
    ],
)
def test_a_bad_url_says_what_is_wrong(
    base: object, error: type[Exception], message: str
) -> None:
    """Each unusable base URL is refused with its own reason, a bare user name too."""
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        resolve_target(base, "t", path=PATH)  # type: ignore[arg-type]


def test_a_token_that_is_not_text_is_named_as_such() -> None:
    """The error says what is wrong with the token, without the token."""
    with pytest.raises(TokenNotText, match=r"^the token is not valid text"):
        resolve_target("https://x.test", "\udcff", path=PATH)


def test_reserved_characters_in_a_token_are_percent_encoded() -> None:
    """A space is %20 (not +) and a / is %2F, as every server decodes them."""
    target = resolve_target("https://x.test", "a b/c+d=e", path=PATH)
    assert target.resource == "/api/v2/ws?token=a%20b%2Fc%2Bd%3De"


def test_a_relative_default_path_gets_its_slash() -> None:
    """path="ws" is sent as /ws."""
    assert resolve_target("https://x.test", "t", path="ws").resource == "/ws?token=t"


def test_no_token_and_no_query_leaves_no_question_mark() -> None:
    """token=None (a header token) with no other parameter: a bare path."""
    assert resolve_target("https://x.test", None, path=PATH).url == (
        "wss://x.test/api/v2/ws"
    )
