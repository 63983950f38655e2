"""A Facebook Page's feed: ``POST /v{N}.0/{page-id}/feed``, Graph errors, no idempotency.

* the Page token as ``access_token`` (query, form or JSON) or a bearer header;
  ``invalid`` is refused with code 190;
* ``message`` and/or ``link``; the same ones twice in a row to a Page are
  refused with code 506 ("Duplicate status message");
* a Page's calls can be capped (``page_limit`` calls per rolling 24 hours,
  off by default): past it, code 80001 with ``X-Business-Use-Case-Usage``
  saying when access returns;
* success: ``200 {"id": "{page-id}_{post-id}"}``.
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from collections.abc import Callable

import attrs

from .._httpserver import HttpRequest, HttpResponse
from . import _graph
from ._graph import GraphError
from ._provider import Outcome, ProviderSpec

_FEED = re.compile(r"/(\d+)/feed")

_THROTTLED = GraphError(
    code=80001,
    subcode=2494055,
    message="(#80001) There have been too many calls to this Page account. Wait a bit and "
    "try again. For more info, please refer to "
    "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
)
_DUPLICATE = GraphError(code=506, message="(#506) Duplicate status message")
_NO_CONTENT = GraphError(code=100, message="(#100) The parameter message or link is required")


REPLIES = _graph.replies(_THROTTLED, "1234567890", "pages")


@attrs.define
class FacebookPage:
    """Pages and their feeds: each Page remembers its last post and its recent calls."""

    page_limit: int | None = None  # calls per Page per rolling 24 hours
    clock: Callable[[], float] = time.time
    last_post: dict[str, tuple[str, str]] = attrs.Factory(dict)  # page -> (message, link)
    calls: dict[str, deque[float]] = attrs.Factory(dict)
    posts: int = 0

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        trace = _graph.trace_id(rng)
        feed = _FEED.fullmatch(_graph.graph_path(path))
        if feed is None or request.method != "POST":
            object_id = _graph.graph_path(path).strip("/") or "me"
            return Outcome(_graph.unsupported(request.method, object_id).response(trace))
        page = feed.group(1)
        try:
            fields = _graph.params(request)
        except ValueError:
            return Outcome(_NO_CONTENT.response(trace))
        problem = _graph.token_problem(request, fields) or self._throttle(page)
        if problem is not None:
            return Outcome(problem.response(trace, self._usage(page, problem)))
        return Outcome(self._post(page, fields, rng, trace))

    def _throttle(self, page: str) -> GraphError | None:
        calls = _graph.prune(self.calls.setdefault(page, deque()), self.clock())
        if self.page_limit is not None and len(calls) >= self.page_limit:
            return _THROTTLED
        calls.append(self.clock())
        return None

    def _usage(self, page: str, problem: GraphError) -> tuple[tuple[str, str], ...]:
        if problem is not _THROTTLED:
            return ()
        oldest = self.calls[page][0]
        wait = oldest + _graph.DAY - self.clock()
        return (_graph.usage_header(page, "pages", wait),)

    def _post(
        self, page: str, fields: dict[str, str], rng: random.Random, trace: str
    ) -> HttpResponse:
        content = (fields.get("message", ""), fields.get("link", ""))
        if not any(content):
            return _NO_CONTENT.response(trace)
        if self.last_post.get(page) == content:
            return _DUPLICATE.response(trace)
        self.last_post[page] = content
        self.posts += 1
        post_id = rng.randrange(10**15, 10**16)
        return HttpResponse.json(200, {"id": f"{page}_{post_id}"})


SPEC = ProviderSpec("facebook-page", FacebookPage, REPLIES)
