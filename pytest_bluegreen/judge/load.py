"""Bounded HTTP load with client-side timings: a probe during switches and the perf checks' engine.

Every run stops by itself: after ``total`` requests or ``duration`` seconds, whichever comes
first (or when ``stop`` is set). Requests go to one URL; each worker uses one of three kinds:

- ``keepalive-get``: GET on a persistent connection;
- ``new-get``: GET on a new connection each time (``Connection: close``);
- ``keepalive-post``: POST with a small JSON body on a persistent connection.

A sample is *failed* when the request raised (refused, reset, timeout) or answered 5xx or an
unexpected status; percentiles are computed here, since HAProxy's own timings are averages.

An ``https://`` URL is loaded over TLS, the certificate verified (:func:`tls_context`): against
``tls_ca`` when given, else against what the checks' requests sessions and the switch's
verification trust. A handshake that fails on the certificate or the protocol (a wrong CA, a
plain HTTP port behind an ``https://`` URL) stops the run with :class:`TlsError`, an
infrastructure error: nothing could be measured there, which is not the same as failed answers.
"""

from __future__ import annotations

import http.client
import itertools
import math
import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pytest_bluegreen.eventually import InfrastructureError

from .headers import COLOR_HEADER, SERVER_HEADER, VERSION_HEADER

__all__ = [
    "KINDS",
    "LoadResult",
    "Sample",
    "TlsError",
    "nearest_rank",
    "percentile",
    "run_interleaved",
    "run_load",
    "tls_context",
]

CaFile = str | os.PathLike[str]
# a handshake that ends like this is a connection lost on the way (as a reset would be), not a
# certificate or protocol the two sides disagree on
_LOST_IN_HANDSHAKE = (ssl.SSLEOFError, ssl.SSLSyscallError, ssl.SSLZeroReturnError)


class TlsError(InfrastructureError):
    """The TLS handshake with an ``https://`` URL failed: its certificate does not verify
    against the trusted CAs, or the two sides share no protocol (a plain HTTP port)."""


def default_ca() -> str | None:
    """What requests verifies against without ``verify=``: ``REQUESTS_CA_BUNDLE``, else
    ``CURL_CA_BUNDLE``, else certifi's bundle; None (the system's store) without certifi."""
    return _default_trust()[0]


def _default_trust() -> tuple[str | None, str]:
    """(the CA file or folder, what it is), as requests chooses it."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if value := os.environ.get(name):
            return value, f"{name}={value}"
    try:
        import certifi  # noqa: PLC0415 - requests' dependency, loaded for https:// only
    except ImportError:
        return None, "the system's CA store"
    return str(certifi.where()), "certifi's CA bundle"


def _trusted(ca: CaFile | None) -> str:
    """``verified against tls_ca /etc/ca.pem``: what a failed handshake was verified against."""
    if ca is not None:
        return f"verified against tls_ca {os.fspath(ca)}"
    _, what = _default_trust()
    return f"verified against {what}; tls_ca or REQUESTS_CA_BUNDLE names another CA"


def tls_context(ca: CaFile | None = None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and name: against ``ca`` (a CA or
    certificate file, or a folder of them) when given, else against :func:`default_ca`."""
    where = os.fspath(ca) if ca is not None else default_ca()
    if where is not None and os.path.isdir(where):
        context = ssl.create_default_context(capath=where)
    else:
        context = ssl.create_default_context(cafile=where)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _tls_for(urls: Sequence[str], ca: CaFile | None) -> ssl.SSLContext | None:
    """One context for every https:// URL of a run (the CA file read once), or None."""
    if not any(urlsplit(url).scheme == "https" for url in urls):
        return None
    try:
        return tls_context(ca)
    except (OSError, ssl.SSLError) as exc:
        where = os.fspath(ca) if ca is not None else default_ca()
        raise TlsError(f"no TLS for {urls[0]}: the CA {where} cannot be read: {exc}") from exc


KINDS = ("keepalive-get", "new-get", "keepalive-post")
_BODY = b'{"probe": true}'


@dataclass(frozen=True)
class Sample:
    kind: str
    start: float  # time.monotonic() when sent
    latency: float  # seconds until the whole response was read
    status: int | None
    color: str | None
    error: str | None
    # what the answer said of its build: the version header, HAProxy's server header (raw)
    version: str | None = None
    server: str | None = None

    @property
    def end(self) -> float:
        return self.start + self.latency

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status is None or not 200 <= self.status < 400


def nearest_rank(count: int, pct: float) -> int:
    """The 1-based rank of the nearest-rank ``pct``-th percentile among ``count`` values."""
    # pct * n / 100 in binary floating point can land just above a whole number
    # (7 / 100 * 100 == 7.000000000000001): round that noise away before the ceiling
    rank = max(1, math.ceil(round(pct * count / 100, 6)))
    return min(rank, count)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (as k6 and hey report them); 0.0 for no values."""
    if not values:
        return 0.0
    return sorted(values)[nearest_rank(len(values), pct) - 1]


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    @property
    def error_rate(self) -> float:
        return len(self.failed) / self.count if self.samples else 0.0

    @property
    def wall(self) -> float:
        return self.finished - self.started

    @property
    def throughput(self) -> float:
        return self.count / self.wall if self.wall > 0 else 0.0

    def latency_ms(self, pct: float) -> float:
        return percentile([s.latency for s in self.samples if not s.failed], pct) * 1000

    def colors(self) -> Counter[str | None]:
        return Counter(s.color for s in self.samples if not s.failed)

    def by_kind(self) -> Counter[str]:
        return Counter(s.kind for s in self.samples)

    def first_from(self, color: str, after: float) -> Sample | None:
        """The first response from ``color`` that ended after ``after`` (monotonic)."""
        candidates = [s for s in self.samples if s.color == color and s.end >= after]
        return min(candidates, key=lambda s: s.end, default=None)


class _Worker(threading.Thread):
    def __init__(
        self,
        kind: str,
        url: str,
        *,
        budget: itertools.count[int],
        total: int,
        deadline: float,
        stop: threading.Event,
        timeout: float,
        color_header: str,
        out: list[Sample],
        on_sample: Callable[[Sample], None] | None,
        version_header: str = VERSION_HEADER,
        server_header: str = SERVER_HEADER,
        tls: ssl.SSLContext | None = None,
        failures: list[TlsError] | None = None,
        pause: float = 0.0,
    ) -> None:
        super().__init__(daemon=True)
        self.pause = pause
        self.version_header, self.server_header = version_header, server_header
        parts = urlsplit(url)
        self.url = url
        self.kind = kind
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.tls = tls if parts.scheme == "https" else None
        if parts.scheme == "https" and tls is None:
            raise ValueError(f"{url}: an https:// URL needs a TLS context")
        self.budget, self.total, self.deadline = budget, total, deadline
        self.stop, self.timeout, self.color_header = stop, timeout, color_header
        self.out = out
        self.on_sample = on_sample
        self.failures = failures if failures is not None else []
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.tls is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            else:
                conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.tls
                )
            try:
                conn.connect()
            except ssl.SSLError as exc:
                conn.close()
                if isinstance(exc, _LOST_IN_HANDSHAKE):
                    raise
                raise TlsError(f"{self.url}: the TLS handshake failed: {exc}") from exc
            self._conn = conn
        return self._conn

    def _fail(self, failure: TlsError) -> None:
        """A handshake that cannot succeed: the whole run stops, and says why."""
        self.failures.append(failure)
        self.stop.set()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _once(self) -> Sample:
        start = time.monotonic()
        try:
            conn = self._connection()
            if self.kind == "keepalive-post":
                conn.request(
                    "POST", self.path, body=_BODY, headers={"Content-Type": "application/json"}
                )
            elif self.kind == "new-get":
                conn.request("GET", self.path, headers={"Connection": "close"})
            else:
                conn.request("GET", self.path)
            response = conn.getresponse()
            response.read()
            color = response.getheader(self.color_header)
            if self.kind == "new-get" or response.will_close:
                self._close()
            return Sample(
                self.kind,
                start,
                time.monotonic() - start,
                response.status,
                color,
                None,
                response.getheader(self.version_header),
                response.getheader(self.server_header),
            )
        except (OSError, http.client.HTTPException) as exc:  # a TlsError goes up: not a sample
            self._close()
            error = f"{type(exc).__name__}: {exc}"
            return Sample(self.kind, start, time.monotonic() - start, None, None, error)

    def run(self) -> None:
        local: list[Sample] = []
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                if next(self.budget) >= self.total:
                    break
                sample = self._once()
                local.append(sample)
                if self.on_sample is not None:
                    self.on_sample(sample)
                if self.pause and self.stop.wait(self.pause):
                    break
        except TlsError as failure:
            self._fail(failure)
        finally:
            self._close()
            self.out.extend(local)


def run_load(
    url: str,
    *,
    total: int,
    duration: float,
    concurrency: int = 6,
    kinds: Sequence[str] = KINDS,
    timeout: float = 5.0,
    color_header: str = COLOR_HEADER,
    stop: threading.Event | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    version_header: str = VERSION_HEADER,
    server_header: str = SERVER_HEADER,
    tls_ca: CaFile | None = None,
    pause: float = 0.0,
) -> LoadResult:
    """Send at most ``total`` requests within ``duration`` seconds; workers cycle over ``kinds``.
    With ``pause``, each worker waits that many seconds after each answer: a steady trickle (a
    probe that must see every moment of a switch, not load it) instead of a closed loop as fast
    as the target answers.
    Each sample keeps what its answer said of its build (``version_header``, ``server_header``):
    a check judging a color by a load notes them with ``ColorSession.note_answers``.

    An ``https://`` URL is verified against ``tls_ca`` (else :func:`default_ca`); a handshake
    that fails on the certificate or the protocol raises :class:`TlsError` (and sets ``stop``).
    """
    if total < 1 or duration <= 0 or concurrency < 1:
        raise ValueError("total, duration and concurrency must be positive")
    if pause < 0:
        raise ValueError("pause must not be negative")
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown load kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    tls = _tls_for([url], tls_ca)
    stop = stop if stop is not None else threading.Event()  # one for all: a failure ends all
    failures: list[TlsError] = []
    result = LoadResult(started=time.monotonic())
    budget = itertools.count()
    deadline = result.started + duration
    out: list[Sample] = []
    workers = [
        _Worker(
            kinds[i % len(kinds)],
            url,
            budget=budget,
            total=total,
            deadline=deadline,
            stop=stop,
            timeout=timeout,
            color_header=color_header,
            out=out,
            on_sample=on_sample,
            version_header=version_header,
            server_header=server_header,
            tls=tls,
            failures=failures,
            pause=pause,
        )
        for i in range(concurrency)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(duration + timeout + 5)
    if failures:
        raise TlsError(f"{failures[0]} ({_trusted(tls_ca)})") from failures[0]
    result.finished = time.monotonic()
    result.samples = sorted(out, key=lambda s: s.start)
    return result


class _Alternating(threading.Thread):
    """One connection of the interleaved load: a request to each target in turn, starting
    at ``first``, so that at any moment the workers hit every target alike."""

    def __init__(
        self,
        requesters: Sequence[tuple[str, _Worker]],
        first: int,
        *,
        budget: itertools.count[int],
        rounds: int,
        deadline: float,
        stop: threading.Event,
        out: dict[str, list[Sample]],
    ) -> None:
        super().__init__(daemon=True)
        self.order = [*requesters[first:], *requesters[:first]]
        self.budget, self.rounds, self.deadline, self.stop = budget, rounds, deadline, stop
        self.out = out

    def run(self) -> None:
        local: dict[str, list[Sample]] = {name: [] for name, _ in self.order}
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                if next(self.budget) >= self.rounds:
                    break
                for name, requester in self.order:
                    local[name].append(requester._once())
        except TlsError as failure:  # the same context on every connection: all would fail
            _, requester = self.order[0]
            requester._fail(failure)
        finally:
            for name, requester in self.order:
                requester._close()
                self.out[name].extend(local[name])


def run_interleaved(
    urls: Mapping[str, str],
    *,
    total_each: int,
    duration: float,
    concurrency: int = 4,
    timeout: float = 5.0,
    color_header: str = COLOR_HEADER,
    tls_ca: CaFile | None = None,
) -> dict[str, LoadResult]:
    """The same bounded keep-alive GET load on several URLs at once, interleaved in time:
    every connection sends one request to each URL in turn (the connections start on
    different URLs), so a noisy machine slows every target alike. At most ``total_each``
    requests per URL within ``duration`` seconds. Returns a LoadResult per name.

    ``https://`` URLs as in :func:`run_load`: a failed handshake raises :class:`TlsError`."""
    if total_each < 1 or duration <= 0 or concurrency < 1 or not urls:
        raise ValueError("total_each, duration, concurrency and urls must be positive")
    tls = _tls_for(list(urls.values()), tls_ca)
    failures: list[TlsError] = []
    started = time.monotonic()
    deadline = started + duration
    budget = itertools.count()
    stop = threading.Event()
    out: dict[str, list[Sample]] = {name: [] for name in urls}
    workers = []
    for index in range(concurrency):
        requesters = [
            (
                name,
                _Worker(
                    "keepalive-get", url, budget=budget, total=total_each, deadline=deadline,
                    stop=stop, timeout=timeout, color_header=color_header, out=[],
                    on_sample=None, tls=tls, failures=failures,
                ),
            )
            for name, url in urls.items()
        ]  # fmt: skip
        workers.append(
            _Alternating(
                requesters, index % len(urls), budget=budget, rounds=total_each,
                deadline=deadline, stop=stop, out=out,
            )
        )  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(duration + timeout * len(urls) + 5)
    if failures:
        raise TlsError(f"{failures[0]} ({_trusted(tls_ca)})") from failures[0]
    finished = time.monotonic()
    return {
        name: LoadResult(sorted(samples, key=lambda s: s.start), started, finished)
        for name, samples in out.items()
    }
