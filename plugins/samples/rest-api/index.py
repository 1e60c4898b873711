"""rest-api-sample: a Summit-style (execute-style) REST integration.

`inputs`: `{"resource": "posts", "id": 1}` (`id` optional). The base URL is
`SAMPLE_REST_API_URL` when exposed through allowedEnv (else DEFAULT_BASE_URL); a bearer token is
sent when `SAMPLE_REST_API_TOKEN` is exposed and set. The last HTTP status is cached under the
key `last_status` of the instance's cache namespace. Returns `{status, url, data}`: `data` is the
parsed JSON body, or the text when the body is not JSON.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

DEFAULT_BASE_URL = "https://jsonplaceholder.typicode.com"

metadata = {
    "name": "rest-api-sample",
    "version": "1.0.0",
    "description": "GET a REST resource by name and optional id; returns status, url and data.",
}

input_schema = {
    "type": "object",
    "properties": {
        "resource": {"type": "string", "description": "Resource name, e.g. 'posts'."},
        "id": {"type": ["integer", "string"], "description": "Optional resource id."},
    },
    "required": ["resource"],
}


def _build_url(base: str, inputs: Any) -> str:
    if not isinstance(inputs, dict):
        raise ValueError(f"inputs must be an object like {{'resource': 'posts'}}, got {inputs!r}")
    resource = inputs.get("resource")
    if not isinstance(resource, str) or not resource.strip("/"):
        raise ValueError(f"inputs.resource must be a non-empty string, got {resource!r}")
    url = f"{base.rstrip('/')}/{quote(resource.strip('/'))}"
    item = inputs.get("id")
    if item is not None:
        if isinstance(item, bool) or not isinstance(item, int | str) or item == "":
            raise ValueError(f"inputs.id must be an integer or a string, got {item!r}")
        url += f"/{quote(str(item), safe='')}"
    return url


async def execute(inputs: Any, context: Any, config: Any) -> dict[str, Any]:
    env = context.env
    base = env.get("SAMPLE_REST_API_URL") or DEFAULT_BASE_URL
    url = _build_url(base, inputs)
    headers = {"Accept": "application/json"}
    token = env.get("SAMPLE_REST_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await context.http.get(url, headers=headers)
    context.cache.set("last_status", response.status_code)
    context.logger.info("GET %s -> %s", url, response.status_code)
    try:
        data: Any = response.json()
    except ValueError:
        data = response.text
    return {"status": response.status_code, "url": url, "data": data}
