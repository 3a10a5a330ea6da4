"""The load generator: closed-loop clients, one thread each, for a fixed number of seconds.

Each client sends its next request as soon as the last one answered (no think time), so the
figures say how much the server takes, not how fast people click. Half the clients (rounded
up) use the API with a token and write (highlights, findings, small profiling runs); the
others sign in through the login form and read pages. Standard library only: no Django, no
torch, no dependency of its own.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

REQUEST_TIMEOUT_S = 30.0
# The status recorded when no HTTP answer came back (refused, reset or timed out).
NO_ANSWER = 0
KEPT_UNEXPECTED = 20
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

# (weight, path, the Site list a detail path takes its id from, or None for a list)
API_READS = [
    (3, "/api/insights/", None), (3, "/api/insights/{id}/", "insights"),
    (2, "/api/findings/", None), (2, "/api/findings/{id}/", "findings"),
    (1, "/api/changes/", None), (1, "/api/changes/{id}/", "changes"),
    (1, "/api/runs/", None), (1, "/api/runs/{id}/", "runs"),
    (1, "/api/interviews/", None), (1, "/api/interviews/{id}/", "interviews"),
]  # fmt: skip
PAGE_READS = [
    (1, "/", None),
    (2, "/insights/", None), (3, "/insights/{id}/", "insights"),
    (2, "/findings/", None), (2, "/findings/{id}/", "findings"),
    (1, "/changes/", None), (1, "/changes/{id}/", "changes"),
    (1, "/runs/", None), (1, "/runs/{id}/", "runs"),
    (1, "/interviews/", None), (2, "/interviews/{id}/", "interviews"),
]  # fmt: skip
# Writes per API client, against 16 reads: about one request in eight writes, and one in
# sixty-five starts a run (each run holds a worker for a few seconds).
API_WRITE_WEIGHTS = {"highlight": 1.0, "finding": 1.0, "run": 0.25}


@dataclass(frozen=True)
class Site:
    """The site under load and the records the clients read and write (from `prepare`).
    `runs` grows as API clients start runs, so run pages read fresh ones too."""

    base_url: str
    token: str
    username: str
    password: str
    insights: list[int]
    findings: list[int]
    changes: list[int]
    interviews: list[int]
    runs: list[int]
    themes: list[int]
    passages: list[dict]  # {"interview", "start", "end", "quote"}: spans a highlight may take
    finding_model: int
    profile_model: int
    profile_config: dict


@dataclass(frozen=True)
class Write:
    """A write the server acknowledged with 2xx: the record's kind, the id it answered (None
    when it answered none) and the value that identifies this write's row."""

    kind: str
    id: int | None
    marker: str


class Recorder:
    """Latencies and statuses by endpoint, the first unexpected answers, and the writes the
    server acknowledged; shared by all client threads. Latencies and statuses count from
    `timed_from` (after the warm-up); failures and writes count from the first request."""

    def __init__(self, timed_from: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.timed_from = timed_from
        self.latencies_ms: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.failures = Counter(
            {"errors_5xx": 0, "unexpected_status": 0, "no_answer": 0, "client_errors": 0}
        )
        self.unexpected: list[str] = []
        self.writes: list[Write] = []

    def request(self, endpoint, status, started, elapsed_ms, expected, body) -> None:
        with self._lock:
            if started >= self.timed_from:
                self.latencies_ms[endpoint].append(elapsed_ms)
                self.statuses[endpoint][status] += 1
            if status == expected:
                return
            self.failures[_failure_kind(status)] += 1
            if len(self.unexpected) < KEPT_UNEXPECTED:
                self.unexpected.append(f"{endpoint}: {status or 'no answer'} {body[:300]!r}")

    def write(self, write: Write) -> None:
        with self._lock:
            self.writes.append(write)

    def client_error(self, name: str, error: Exception) -> None:
        """A client stopped on an error of its own: the run cannot be trusted."""
        with self._lock:
            self.failures["client_errors"] += 1
            self.unexpected.append(f"client {name} stopped: {error!r}")


def _failure_kind(status: int) -> str:
    if status == NO_ANSWER:
        return "no_answer"
    return "errors_5xx" if status >= 500 else "unexpected_status"


class Client:
    """One simulated user on one keep-alive connection (reopened when the server closes it)."""

    reads: list = []

    def __init__(self, site: Site, recorder: Recorder, rng: random.Random, name: str) -> None:
        address = urllib.parse.urlsplit(site.base_url)
        self.site, self.recorder, self.rng, self.name = site, recorder, rng, name
        self.connection = http.client.HTTPConnection(
            address.hostname, address.port, timeout=REQUEST_TIMEOUT_S
        )
        self.sequence = 0
        self.actions: list[tuple[float, Callable[[], object]]] = [
            (weight, lambda path=path, ids=ids: self.read(path, ids))
            for weight, path, ids in self.reads
        ]

    def run(self, deadline: float) -> None:
        try:
            self.run_until(deadline)
        except Exception as error:  # any crash is reported, never swallowed
            self.recorder.client_error(self.name, error)

    def run_until(self, deadline: float) -> None:
        weights = [weight for weight, _ in self.actions]
        while time.perf_counter() < deadline:
            self.rng.choices(self.actions, weights)[0][1]()

    def read(self, path: str, ids: str | None) -> None:
        concrete = path.format(id=self.rng.choice(getattr(self.site, ids))) if ids else path
        self.send("GET", concrete, f"GET {path}", 200)

    def send(self, method, path, endpoint, expected, *, body=None, content_type=None):
        """Send one request and record it; returns (status, body), status NO_ANSWER when no
        answer came back."""
        headers = self.headers()
        if body is not None:
            headers["Content-Type"] = content_type
        started = time.perf_counter()
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            status, payload = response.status, response.read()
            self.answered(response)
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            status, payload = NO_ANSWER, repr(error).encode()
        elapsed_ms = (time.perf_counter() - started) * 1000
        text = payload.decode("utf-8", "replace")
        self.recorder.request(endpoint, status, started, elapsed_ms, expected, text)
        return status, payload

    def headers(self) -> dict[str, str]:
        return {}

    def answered(self, response: http.client.HTTPResponse) -> None:
        """Hook: look at an answer's headers (the page client keeps its cookies)."""

    def marker(self, kind: str) -> str:
        self.sequence += 1
        return f"load {kind} {self.name} #{self.sequence}"


class ApiClient(Client):
    """Reads and writes through the API with `Authorization: Token ...`."""

    reads = API_READS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        writes = {"highlight": self.create_highlight, "finding": self.create_finding,
                  "run": self.start_run}  # fmt: skip
        self.actions += [(API_WRITE_WEIGHTS[kind], write) for kind, write in writes.items()]

    def run_until(self, deadline: float) -> None:
        # One write of each kind first, so that even a short run checks every kind.
        self.create_highlight()
        self.create_finding()
        self.start_run()
        super().run_until(deadline)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.site.token}", "Accept": "application/json"}

    def create_highlight(self) -> None:
        note = self.marker("highlight")
        body = {**self.rng.choice(self.site.passages), "note": note,
                "themes": [self.rng.choice(self.site.themes)]}  # fmt: skip
        self.post("highlight", "/api/highlights/", "POST /api/highlights/", body, 201, note)

    def create_finding(self) -> None:
        title = self.marker("finding")
        body = {"subject_model": self.site.finding_model, "title": title, "layer_name": "conv2",
                "kind": "feature", "concept": "curvature", "status": "hypothesis",
                "confidence": 0.5}  # fmt: skip
        self.post("finding", "/api/findings/", "POST /api/findings/", body, 201, title)

    def start_run(self) -> None:
        model = self.site.profile_model
        run_id = self.post(
            "run", f"/api/models/{model}/profile/", "POST /api/models/{id}/profile/",
            {"config": self.site.profile_config}, 202, str(model),
        )  # fmt: skip
        if run_id is not None:
            self.site.runs.append(run_id)

    def post(self, kind, path, endpoint, body, expected, marker) -> int | None:
        """POST JSON; a 2xx answer is recorded as a write to look for afterwards."""
        status, payload = self.send(
            "POST", path, endpoint, expected, body=json.dumps(body).encode(),
            content_type="application/json",
        )  # fmt: skip
        if not 200 <= status < 300:
            return None
        record_id = _answered_id(payload)
        self.recorder.write(Write(kind, record_id, marker))
        return record_id


class PageClient(Client):
    """Signs in through the login form (CSRF token and cookie), then reads pages with its
    session cookie. Cookies are sent back whatever their Secure flag: in production a
    TLS-terminating proxy stands where this plain-HTTP client does."""

    reads = PAGE_READS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cookies: dict[str, str] = {}

    def run_until(self, deadline: float) -> None:
        self.log_in()
        super().run_until(deadline)

    def log_in(self) -> None:
        _, page = self.send("GET", "/login/", "GET /login/", 200)
        found = CSRF_INPUT.search(page.decode("utf-8", "replace"))
        form = {"csrfmiddlewaretoken": found.group(1) if found else "",
                "username": self.site.username, "password": self.site.password}  # fmt: skip
        self.send(
            "POST", "/login/", "POST /login/", 302, body=urllib.parse.urlencode(form).encode(),
            content_type="application/x-www-form-urlencoded",
        )  # fmt: skip

    def headers(self) -> dict[str, str]:
        headers = {"Origin": self.site.base_url}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return headers

    def answered(self, response: http.client.HTTPResponse) -> None:
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value, _, attributes = rest.partition(";")
            if "max-age=0" in attributes.lower().replace(" ", ""):
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value


def _answered_id(payload: bytes) -> int | None:
    try:
        record_id = json.loads(payload).get("id")
    except (ValueError, AttributeError):
        return None
    return record_id if isinstance(record_id, int) else None


@dataclass
class LoadResult:
    recorder: Recorder
    clients: int
    seconds: float
    elapsed_s: float  # from the end of the warm-up to the last answer


def run_clients(
    site: Site, *, clients: int, seconds: float, warmup_seconds: float = 0.0, seed: int = 0
) -> LoadResult:
    """Run `clients` clients for `warmup_seconds`, untimed (each web process loads its code
    and opens its database connection), then for `seconds`, timed. Requests in flight at the
    end finish."""
    timed_from = time.perf_counter() + warmup_seconds
    recorder = Recorder(timed_from)
    api_clients = math.ceil(clients / 2)
    users = [
        (ApiClient if index < api_clients else PageClient)(
            site, recorder, random.Random(seed * 1000 + index),
            f"api-{index}" if index < api_clients else f"page-{index - api_clients}",
        )
        for index in range(clients)
    ]  # fmt: skip
    deadline = timed_from + seconds
    threads = [threading.Thread(target=user.run, args=(deadline,), daemon=True)
               for user in users]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()) + REQUEST_TIMEOUT_S + 5)
    return LoadResult(recorder, clients, seconds, time.perf_counter() - timed_from)


def percentile(ordered: list[float], fraction: float) -> float:
    """The `fraction` quantile of sorted values, interpolated linearly between ranks."""
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def endpoint_figures(result: LoadResult) -> dict[str, dict]:
    """Per endpoint: requests, requests per second, p50/p95/p99/max latency in ms, and the
    count of each status (0: no answer)."""
    figures = {}
    for endpoint, latencies in sorted(result.recorder.latencies_ms.items()):
        statuses = sorted(result.recorder.statuses[endpoint].items())
        figures[endpoint] = {
            **_latency_figures(latencies, result.elapsed_s),
            "statuses": {str(status): number for status, number in statuses},
        }
    return figures


def _latency_figures(latencies: list[float], elapsed_s: float) -> dict:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rps": round(len(ordered) / elapsed_s, 2),
        **{f"p{q}_ms": round(percentile(ordered, q / 100), 1) for q in (50, 95, 99)},
        "max_ms": round(ordered[-1], 1),
    }


def endpoint_group(endpoint: str) -> str:
    """The kind of request an endpoint serves, for the summary rows."""
    if "/login/" in endpoint:
        return "login"
    if endpoint.endswith("/profile/"):
        return "run start"
    if endpoint.startswith("POST "):
        return "API write"
    return "API read" if endpoint.startswith("GET /api/") else "page read"


def group_figures(result: LoadResult) -> dict[str, dict]:
    """The same figures as endpoint_figures, per endpoint group and for all requests."""
    groups: dict[str, list[float]] = defaultdict(list)
    for endpoint, latencies in result.recorder.latencies_ms.items():
        groups[endpoint_group(endpoint)] += latencies
        groups["all"] += latencies
    order = ("API read", "API write", "run start", "page read", "login", "all")
    return {name: _latency_figures(groups[name], result.elapsed_s)
            for name in order if groups.get(name)}  # fmt: skip
