"""The live page at ``/``: static files shipped in ``serve/static`` (plain
JavaScript, no build step), read once and served from memory.

With ``service.auth_token`` set, open ``/?token=<token>``: the page passes the
token on to its own files, ``/health``, ``/venues`` and ``/ws``."""

from __future__ import annotations

from importlib import resources
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
ASSETS = ("live.js", "live.css")


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def render_index(template: str, token: str | None) -> str:
    """``index.html`` with its asset links carrying ``?token=`` when the page was opened with one."""
    return template.replace("{{query}}", "?token=" + quote(token, safe="") if token else "")


def page_routes() -> list[Route]:
    """``/`` and ``/static/{name}`` for the files in ``ASSETS``."""
    index = _read("index.html")
    assets = {name: _read(name) for name in ASSETS}
    headers = {"Cache-Control": "no-cache"}

    async def page(request: Request) -> Response:
        return Response(render_index(index, request.query_params.get("token")), media_type=TYPES[".html"], headers=headers)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return Response('{"error": "not found"}', status_code=404, media_type="application/json")
        return Response(assets[name], media_type=TYPES["." + name.rpartition(".")[2]], headers=headers)

    return [Route("/", page), Route("/static/{name}", static)]
