"""Where ``trio-ws-bus listen`` gets its token: environment, file or command.

Each source is read again before every connection attempt, and none ever
puts the token in a message.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import attrs
import trio

from .._secrets import Redactor

__all__ = [
    "TOKEN_COMMAND_TIMEOUT",
    "CommandToken",
    "EnvToken",
    "FileToken",
    "TokenSource",
    "TokenSourceError",
    "token_provider",
]


class TokenSourceError(Exception):
    """A token source could not produce a token; the message never holds one."""


#: Default bound on one run of ``--token-command``, in seconds.
TOKEN_COMMAND_TIMEOUT: Final = 5.0


@attrs.frozen
class EnvToken:
    """The token is the value of an environment variable.

    Attributes:
        name: The variable's name.
        environ: The environment to read (``os.environ`` by default).
    """

    name: str
    environ: Mapping[str, str] = attrs.field(factory=lambda: os.environ, repr=False)

    def describe(self) -> str:
        """Say where the token comes from (never the token itself)."""
        return f"environment variable {self.name}"

    def read(self) -> str:
        """Return the variable's value, whitespace stripped.

        Raises:
            TokenSourceError: If the variable is unset, blank or holds more
                than one line.
        """
        value = self.environ.get(self.name)
        if value is None:
            raise TokenSourceError(f"environment variable {self.name} is not set")
        return _one_line(value, f"environment variable {self.name}")

    async def fetch(self) -> str:
        """Return the variable's value (see :meth:`read`)."""
        await trio.lowlevel.checkpoint()
        return self.read()


def _one_line(text: str, source: str) -> str:
    """``text`` stripped; blank, or more than one line, is never a token."""
    text = text.strip()
    if not text:
        raise TokenSourceError(f"{source} is empty")
    if len(text.splitlines()) > 1:
        raise TokenSourceError(f"{source} has more than one line")
    return text


def _read_text(path: str, source: str) -> str:
    # A token file is tiny: read it in this thread. (A worker thread would
    # also let MockClock jump past the manager's open_timeout in tests.)
    try:
        with open(path, encoding="utf-8") as file:
            return file.read(64 * 1024)
    except OSError as exc:
        raise TokenSourceError(
            f"cannot read {source}: {exc.strerror or type(exc).__name__}"
        ) from None
    except UnicodeDecodeError:
        raise TokenSourceError(f"{source} is not UTF-8 text") from None


@attrs.frozen
class FileToken:
    """The token is the content of a file, read again before every attempt.

    A token refresher can rewrite the file while ``listen`` runs.

    Attributes:
        path: The file.
        what: What the file holds, as messages name it.
    """

    path: str
    what: str = attrs.field(default="token file", kw_only=True)

    def describe(self) -> str:
        """Say where the token comes from (never the token itself)."""
        return f"file {self.path}"

    def read(self) -> str:
        """Return the file's content, whitespace stripped.

        Raises:
            TokenSourceError: If the file cannot be read, is blank (a
                refresher may be rewriting it: the manager retries) or holds
                more than one line.
        """
        source = f"{self.what} {self.path}"
        return _one_line(_read_text(self.path, source), source)

    async def fetch(self) -> str:
        """Return the file's content (see :meth:`read`)."""
        await trio.lowlevel.checkpoint()
        return self.read()


@attrs.frozen
class CommandToken:
    """The token is what a command prints, run again before every attempt.

    The command line is split like a shell would (:func:`shlex.split`) but
    runs without a shell; its stdin is empty and its stderr is ours.

    Attributes:
        argv: The command and its arguments.
        timeout: Seconds one run may take before it is killed.
    """

    argv: tuple[str, ...]
    timeout: float = TOKEN_COMMAND_TIMEOUT

    def describe(self) -> str:
        """Say where the token comes from (never the token itself)."""
        return f"command {self.argv[0]}"

    async def fetch(self) -> str:
        """Run the command; return its standard output, whitespace stripped.

        Raises:
            TokenSourceError: If the command cannot start, times out, exits
                with a non-zero status or prints nothing.
        """
        try:
            with trio.fail_after(self.timeout):
                result = await trio.run_process(
                    list(self.argv), capture_stdout=True, check=False
                )
        except trio.TooSlowError:
            raise TokenSourceError(
                f"token command timed out after {self.timeout:g} s"
            ) from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TokenSourceError(
                f"cannot run token command {self.argv[0]}: {reason}"
            ) from None
        if result.returncode < 0:
            raise TokenSourceError(
                f"token command was killed by signal {-result.returncode}"
            )
        if result.returncode != 0:
            raise TokenSourceError(
                f"token command exited with status {result.returncode}"
            )
        token = result.stdout.decode("utf-8", "replace").strip()
        if not token:
            raise TokenSourceError("token command printed no token")
        return token


TokenSource = EnvToken | FileToken | CommandToken
"""Where ``listen`` gets its token."""


def token_provider(
    source: TokenSource,
    first: str | None,
    report: Callable[[str], None],
    redactor: Redactor,
) -> Callable[[], Awaitable[str]]:
    """Make the manager's token provider: ``first`` once, then a fresh fetch.

    Each token is remembered by ``redactor`` before the manager gets it, so
    whatever the command prints is scrubbed of the live token.

    ``listen`` checks its token source before it starts (a failure there is a
    usage error); that token serves the first attempt, and every later
    attempt fetches again. A failure is reported with ``report`` (the manager
    itself shows only the exception type) and raised, so the manager retries
    with backoff.
    """
    pending = [first] if first else []

    async def provide() -> str:
        if pending:
            await trio.lowlevel.checkpoint()
            token = pending.pop()
        else:
            try:
                token = await source.fetch()
            except TokenSourceError as exc:
                report(f"token: {exc}")
                raise
        redactor.remember(token)
        return token

    return provide
