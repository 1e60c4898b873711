"""A fake Brave Search API: GET /res/v1/web/search with `X-Subscription-Token`, Brave's result
and error shapes (`{"type": "ErrorResponse", "error": {"status", "code", "detail"}}`)."""

from __future__ import annotations

from typing import Any

from tests.fakes.base import FakeServer, Request, Response

CODES = {
    401: "SUBSCRIPTION_TOKEN_INVALID",
    422: "VALIDATION",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
}


class FakeBrave(FakeServer):
    name = "brave"

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.results: list[dict[str, Any]] | None = None  # None: made up from the query

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        body = {
            "type": "ErrorResponse",
            "error": {
                "id": "fake-error",
                "status": status,
                "code": CODES.get(status, "ERROR"),
                "detail": message,
                "meta": {},
            },
            "time": 1700000000,
        }
        return Response.json(body, status, **headers)

    def handle(self, request: Request) -> Response:
        if request.path != "/res/v1/web/search" or request.method != "GET":
            return self.error_response(404, "Not found", {})
        given = request.headers.get("x-subscription-token", "")
        if given != self.token:
            return self.error_response(
                401, f"The provided subscription token is invalid: {given}", {}
            )
        query = request.query.get("q", "")
        if not query:
            return self.error_response(422, "q is required", {})
        count = int(request.query.get("count", "20"))
        results = self.results
        if results is None:
            results = [
                {
                    "type": "search_result",
                    "title": f"<strong>{query}</strong> result {n}",
                    "url": f"https://example.com/{n}",
                    "description": f"All about <strong>{query}</strong>, part {n}.",
                    "age": "2 days ago",
                }
                for n in range(1, 21)
            ]
        return Response.json(
            {
                "type": "search",
                "query": {"original": query, "more_results_available": True},
                "web": {"type": "search", "results": results[:count]},
            }
        )
