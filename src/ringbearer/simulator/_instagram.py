"""Instagram content publishing: a media container, then ``media_publish``; Graph errors.

* ``POST /v{N}.0/{ig-user-id}/media`` with ``image_url`` (``caption``,
  ``alt_text``) creates a container, ready at once (``FINISHED``), expiring
  24 hours later: ``200 {"id": container}``;
* ``POST /v{N}.0/{ig-user-id}/media_publish`` with ``creation_id`` publishes
  it: ``200 {"id": media}``. An unknown container, or one already published,
  is refused with code 100 (the real code for these is not documented); an
  expired one with -2/2207020; past the publishing cap (``publish_cap`` posts
  per rolling 24 hours, 50 as on the real API, lower it for tests) with
  9/2207042, which names no time (none is documented);
* ``GET /v{N}.0/{container}?fields=status_code`` — ``IN_PROGRESS``,
  ``FINISHED``, ``PUBLISHED``, ``EXPIRED`` or ``ERROR``;
* ``GET /v{N}.0/{ig-user-id}/content_publishing_limit`` — the quota in use.

Creating and publishing count as accepted work; reading does not.
"""

from __future__ import annotations

import enum
import random
import re
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

import attrs

from .._httpserver import HttpRequest, HttpResponse
from . import _graph
from ._graph import GraphError
from ._provider import Outcome, ProviderSpec

_MAX_CAPTION = 2200
_ROUTE = re.compile(r"/(\d+)(?:/(media|media_publish|content_publishing_limit))?")


class Status(enum.Enum):
    IN_PROGRESS = "IN_PROGRESS"
    FINISHED = "FINISHED"
    PUBLISHED = "PUBLISHED"
    EXPIRED = "EXPIRED"
    ERROR = "ERROR"


_CAP = GraphError(
    code=9,
    subcode=2207042,
    message="Application request limit reached",
    user_title="Max media publish limit reached",
    user_msg="You reached maximum number of posts that is allowed to be published by "
    "Content Publishing API.",
)
_EXPIRED = GraphError(
    code=-2,
    subcode=2207020,
    type="OAuthException",
    message="The media you are trying to access has expired. Please try to upload again.",
    user_title="Media expired",
    user_msg="The media you are trying to access has expired. Please try to upload again.",
)
_FAILED = GraphError(
    code=-1,
    subcode=2207032,
    message="Create media failed, please try to re-create media",
    user_title="Media failed",
    user_msg="Create media failed, please try to re-create media",
    transient=True,
)
_NOT_READY = GraphError(
    code=9007,
    subcode=2207027,
    message="Media ID is not available",
    user_title="Media ID is not available",
    user_msg="The media is not ready for publishing, please wait for a moment",
)
_UNFETCHABLE = GraphError(
    code=9004,
    subcode=2207052,
    message="Only photo or video can be accepted as media type.",
    user_title="Media download has failed.",
    user_msg="The media could not be fetched from this URI.",
)
_THROTTLED = GraphError(
    code=80002,
    message="There have been too many calls to this Instagram account. Wait a bit and try "
    "again. For more info, please refer to "
    "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
)


def _invalid(user_msg: str) -> GraphError:
    return GraphError(code=100, message="Invalid parameter", user_msg=user_msg)


def _required(name: str) -> GraphError:
    return GraphError(code=100, message=f"(#100) The parameter {name} is required")


REPLIES = _graph.replies(_THROTTLED, "17841400000000000", "instagram")


@attrs.define
class Container:
    """A media container: whose it is, when it was made, what became of it."""

    owner: str
    created_at: float
    status: Status = Status.FINISHED
    media_id: str | None = None


@attrs.define
class Instagram:
    """Containers by id and each account's publishing times (a rolling 24-hour window)."""

    publish_cap: int = 50
    clock: Callable[[], float] = time.time
    containers: dict[str, Container] = attrs.Factory(dict)
    published: dict[str, deque[float]] = attrs.Factory(dict)

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        trace = _graph.trace_id(rng)
        route = _ROUTE.fullmatch(_graph.graph_path(path))
        try:
            fields = _graph.params(request)
        except ValueError:
            return Outcome(_invalid("The request body could not be read.").response(trace))
        problem = _graph.token_problem(request, fields)
        if problem is not None:
            return Outcome(problem.response(trace))
        if route is None:
            object_id = _graph.graph_path(path).strip("/") or "me"
            return Outcome(_graph.unsupported(request.method, object_id).response(trace))
        answer = self._route(request.method, route[1], route[2], fields, rng)
        if isinstance(answer, GraphError):
            return Outcome(answer.response(trace))
        return Outcome(answer, accepted=request.method == "POST")

    def _route(
        self,
        method: str,
        object_id: str,
        edge: str | None,
        fields: dict[str, str],
        rng: random.Random,
    ) -> HttpResponse | GraphError:
        match method, edge:
            case "POST", "media":
                return self._create(object_id, fields, rng)
            case "POST", "media_publish":
                return self._publish(object_id, fields.get("creation_id"), rng)
            case "GET", "content_publishing_limit":
                return self._quota(object_id)
            case "GET", None if object_id in self.containers:
                return self._show(object_id, fields.get("fields", "id"))
        return _graph.unsupported(method, object_id if edge is None else f"{object_id}/{edge}")

    def _create(
        self, user: str, fields: dict[str, str], rng: random.Random
    ) -> HttpResponse | GraphError:
        image_url = fields.get("image_url")
        if not image_url:
            return _required("image_url")
        if urlsplit(image_url).scheme not in ("http", "https"):
            return _UNFETCHABLE
        if len(fields.get("caption", "")) > _MAX_CAPTION:
            return _invalid(f"The caption is longer than {_MAX_CAPTION} characters.")
        container = str(rng.randrange(10**16, 10**17))
        self.containers[container] = Container(owner=user, created_at=self.clock())
        return HttpResponse.json(200, {"id": container})

    def _publish(
        self, user: str, creation_id: str | None, rng: random.Random
    ) -> HttpResponse | GraphError:
        if not creation_id:
            return _required("creation_id")
        container = self.containers.get(creation_id)
        if container is None or container.owner != user:
            return _invalid(f"The media container {creation_id} does not exist.")
        problem = self._unpublishable(container)
        if problem is not None:
            return problem
        if len(self._window(user)) >= self.publish_cap:
            return _CAP
        container.status = Status.PUBLISHED
        container.media_id = str(rng.randrange(10**16, 10**17))
        self._window(user).append(self.clock())
        return HttpResponse.json(200, {"id": container.media_id})

    def _unpublishable(self, container: Container) -> GraphError | None:
        match self.status(container):
            case Status.PUBLISHED:
                return _invalid("The media has already been published.")
            case Status.EXPIRED:
                return _EXPIRED
            case Status.ERROR:
                return _FAILED
            case Status.IN_PROGRESS:
                return _NOT_READY
        return None

    def status(self, container: Container) -> Status:
        """The container's status now: an unpublished one expires after 24 hours."""
        unpublished = container.status in (Status.FINISHED, Status.IN_PROGRESS)
        if unpublished and self.clock() - container.created_at >= _graph.DAY:
            container.status = Status.EXPIRED
        return container.status

    def _show(self, container_id: str, wanted: str) -> HttpResponse:
        container = self.containers[container_id]
        values = {
            "id": container_id,
            "status_code": self.status(container).value,
            "status": self.status(container).value.title().replace("_", " "),
        }
        names = [name.strip() for name in wanted.split(",")]
        return HttpResponse.json(200, {name: values[name] for name in names if name in values})

    def _quota(self, user: str) -> HttpResponse:
        config = {"quota_total": self.publish_cap, "quota_duration": int(_graph.DAY)}
        usage = {"quota_usage": len(self._window(user)), "config": config}
        return HttpResponse.json(200, {"data": [usage]})

    def _window(self, user: str) -> deque[float]:
        return _graph.prune(self.published.setdefault(user, deque()), self.clock())


SPEC = ProviderSpec("instagram", Instagram, REPLIES)
