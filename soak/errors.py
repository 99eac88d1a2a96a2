"""The exception tree. Only the commands (soak.cli, soak.commands) turn these into exit codes.

    SoakError
    ├── LocalError            our side: bad input, our environment
    │   ├── ProfileError      a profile that cannot be loaded or is invalid
    │   └── ResultsError      a results directory that cannot be written or read
    └── RemoteError           the other side misbehaved or could not be reached
        ├── HandshakeError    TCP connect, TLS or the HTTP upgrade failed
        └── ProtocolError     the peer broke the heartbeat or WebSocket protocol

"Closed" (one side ended the connection on purpose) is not an error: it is a
:class:`soak.classify.CloseInfo` value. "Broken" (the network lost it) is the
``transport`` field of that value.
"""


class SoakError(Exception):
    """Root of every error soak raises on purpose."""


class LocalError(SoakError):
    """A fault on our side: bad input, or an environment we cannot run in."""


class ProfileError(LocalError):
    """A profile that cannot be loaded. The message names file and field."""


class ResultsError(LocalError):
    """A results directory that cannot be written (or read back)."""


class RemoteError(SoakError):
    """A fault on the far side: the target misbehaved or is unreachable."""


class HandshakeError(RemoteError):
    """Opening a connection failed. ``cause`` is a short machine-readable tag
    (``refused``, ``timeout``, ``dns``, ``tls``, ``http_<status>``, ``reset``,
    ``eof``, ``protocol``) used to count failures by cause. ``permanent``:
    the server said that trying again cannot help (OpenClaw's wrong token or
    unknown protocol version); see :class:`soak.backoff.Permanence`."""

    def __init__(
        self,
        cause: str,
        message: str,
        retry_after: float | None = None,
        *,
        permanent: bool = False,
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.retry_after = retry_after
        self.permanent = permanent


class ProtocolError(RemoteError):
    """The peer sent something the protocol does not allow (a malformed or
    oversized frame). Raised by a protocol on a live connection; the client
    closes that connection with ``close_code`` and reconnects."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


def root_cause(exc: BaseException) -> BaseException:
    """The error that says why a connection could not be opened.
    ``trio.open_tcp_stream`` raises ``OSError("all attempts to connect ...
    failed")`` from a group of the per-address errors: the first of them
    says why. Follows ``__cause__`` and the first member of exception groups
    down to the innermost error (the argument itself if there is none)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BaseExceptionGroup):
            if not exc.exceptions:
                return exc
            exc = exc.exceptions[0]
            continue
        cause = exc.__cause__
        if cause is None or (isinstance(exc, OSError) and exc.errno is not None):
            return exc
        exc = cause
    return exc
