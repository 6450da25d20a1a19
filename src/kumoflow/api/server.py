"""The northbound REST API: a FastAPI application served by uvicorn on the
controller's own event loop (no thread, no second process): handlers read
the controller core directly and may ``await dp.request(...)`` of a switch.

    app = build_app(controller)                 # a runtime Controller, or a bare Core in tests
    api = await serve(controller, "127.0.0.1", 9696)
    api.url                                     # "http://127.0.0.1:9696" (the port bound, for port 0)
    await api.stop()

Adding routes. Each module named in `ROUTER_MODULES` has a module-level
``router`` (a `fastapi.APIRouter`) that `build_app` includes, and may have
``setup(app, ctx)``, called before, to add middleware or state. A new
module (the Neutron resources, kumoflow.api.neutron) is one more line in
that list. Routes get what they need through the dependencies here:

    from kumoflow.api.server import AdminCaller, ApiError, Ctx, ProjectCaller

    @router.get("/v2.0/things")
    async def things(ctx: Ctx, caller: ProjectCaller): ...   # any valid token; caller.project_id
    @router.get("/sdn/stuff")
    async def stuff(ctx: Ctx, caller: AdminCaller): ...      # the admin token only (else 403)

and fail with ``raise ApiError(404, "NetworkNotFound", "Network X could not
be found.")``. Every error the API returns has Neutron's body,
``{"NeutronError": {"type", "message", "detail"}}``: a missing or unknown
token is 401, a project token where the admin's is needed 403, a request
that does not validate 400 (never FastAPI's 422), an unknown path 404, a
wrong method 405. The OpenAPI document says so for every operation. An API
of another shape under a path prefix (Octavia's ``/v2/lbaas/``) registers an
`ErrorShape` in ``ctx.error_shapes`` from its module's ``setup``: errors
there, from the same `ApiError`, have its body, and the document its schema.

Tokens (``X-Auth-Token``): the admin token (given, or generated into a file:
options.py) and project tokens the admin issues (``POST /v2.0/tokens``,
tokens.py). `serve` keeps issued tokens in the controller's desired-state
store when it has one (records of kind "token": the secret's sha256, never
the secret), so they outlive a restart; without a store they live in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import importlib
import ipaddress
import logging
import secrets
import socket
import ssl
import time
import uuid
import weakref
from typing import Annotated, Any, Callable

import uvicorn
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("kumoflow.api")

#: modules whose ``router`` build_app includes, in this order (see the module docstring)
ROUTER_MODULES = [
    "kumoflow.api.tokens",
    "kumoflow.api.sdn",
    "kumoflow.api.metrics",
    "kumoflow.api.neutron",
    "kumoflow.api.usage",
    "kumoflow.api.firewall_log",
    "kumoflow.api.events",
    "kumoflow.api.ui",
]

TITLE = "kumoflow"
DESCRIPTION = """The northbound API of a kumoflow controller.

Every request but `/metrics` (on a loopback address) carries a token in
`X-Auth-Token`: the admin token, or a project token the admin issued with
`POST /v2.0/tokens`. Errors have OpenStack Neutron's shape,
`{"NeutronError": {"type": ..., "message": ..., "detail": ...}}`.

`/sdn/...` is the read-only view of the network the controller runs
(admin only): switches and their ports with live counters, links, hosts,
what each switch holds (flows, groups, meters, also in `ovs-ofctl` syntax)
and what the controller would change on it.
"""

#: a status code's Neutron-style error type when a handler names none
_TYPES = {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden", 404: "HTTPNotFound",
          405: "HTTPMethodNotAllowed", 409: "HTTPConflict", 500: "HTTPInternalServerError",
          502: "HTTPBadGateway", 504: "HTTPGatewayTimeout"}


# --- errors ------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered as {"NeutronError": {"type", "message", "detail"}} with `status`."""

    def __init__(self, status: int, type: str, message: str, detail: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.detail = status, type, message, detail
        self.headers = headers


class NeutronErrorBody(BaseModel):
    type: str = Field(description="what went wrong, e.g. SwitchNotFound, HTTPBadRequest")
    message: str = Field(description="a sentence for a person")
    detail: str = Field("", description="more, e.g. each invalid field of a request")


class NeutronError(BaseModel):
    NeutronError: NeutronErrorBody


def error_response(status: int, type: str, message: str, detail: str = "",
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"NeutronError": {"type": type, "message": message, "detail": detail}},
                        status_code=status, headers=headers)


@dataclasses.dataclass(frozen=True)
class ErrorShape:
    """The errors of an API that is not in Neutron's shape: `body` makes the JSON body of
    (status, type, message, detail), `model` is its schema in the OpenAPI document."""

    body: Callable[[int, str, str, str], dict]
    model: type[BaseModel]


def _error(request: Request, status: int, type: str, message: str, detail: str = "",
           headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer, in the shape of the API the request's path belongs to."""
    shape = context_of(request).error_shape(request.url.path)
    if shape is None:
        return error_response(status, type, message, detail, headers)
    return JSONResponse(shape.body(status, type, message, detail), status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> tuple[str, str]:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        value = err.get("input")
        shown = f" (got {value!r:.60})" if isinstance(value, (str, int, float)) and err.get("type") != "missing" \
            else ""
        lines.append(f"{where}: {err.get('msg', 'invalid')}{shown}")
    first = lines[0] if lines else "invalid request"
    return f"Invalid input: {first}", "; ".join(lines)


def _allowed(request: Request, starlette_says: str | None) -> str | None:
    """Every method the OpenAPI document lists for the request's path
    (Starlette's 405 names only those of the first route on the path)."""
    import re

    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, request.url.path):
            methods |= {m.upper() for m in item}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) if methods else starlette_says


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(request, exc.status, exc.type, exc.message, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = _validation_detail(exc)
        return _error(request, 400, "HTTPBadRequest", message, detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        headers = getattr(exc, "headers", None)
        if status == 404 and exc.detail == "Not Found":
            message = f"The resource could not be found: {request.url.path}"
        elif status == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
            allow = _allowed(request, (headers or {}).get("Allow"))
            headers = {**(headers or {}), **({"Allow": allow} if allow else {})}
        else:
            message = str(exc.detail)
        return _error(request, status, _TYPES.get(status, "HTTPError"), message, "", headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API: %s %s failed", request.method, request.url.path)
        return _error(request, 500, "HTTPInternalServerError", "The server failed to answer the request.",
                      type(exc).__name__)


# --- tokens and callers ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is calling: the admin, or a project (by the token it showed)."""

    admin: bool
    project_id: str | None = None
    token_id: str | None = None

    def sees(self, project_id: str | None) -> bool:
        """May this caller see a resource of `project_id` (None: shared/the admin's)?"""
        return self.admin or project_id == self.project_id


@dataclasses.dataclass
class IssuedToken:
    id: str                 # names the token (listing, revoking); not the secret
    project_id: str
    name: str
    created_at: float       # time.time()
    digest: str             # sha256 of the secret; the secret itself is not kept


class Tokens:
    """The admin token, and project tokens issued by the admin: in memory,
    and in the desired-state store when there is one (`use_store`), as
    records of kind "token" (the project, a name, the secret's sha256), so
    they outlive a restart. Lookups are answered from memory."""

    KIND = "token"

    def __init__(self, admin_token: str) -> None:
        if not admin_token:
            raise ValueError("the admin token must not be empty")
        self.admin_token = admin_token
        self.store: Any = None
        self._by_digest: dict[str, IssuedToken] = {}
        self._by_id: dict[str, IssuedToken] = {}

    async def use_store(self, store: Any) -> None:
        """Keep issued tokens in `store` (kumoflow.store), starting from those it holds."""
        from datetime import datetime

        self.store = store
        for record in await store.list(self.KIND):
            created = datetime.fromisoformat(record.created_at.replace("Z", "+00:00")).timestamp()
            self._add(IssuedToken(record.id, record.project_id, record.body.get("name", ""), created,
                                  record.body["sha256"]))

    def _add(self, issued: IssuedToken) -> None:
        self._by_digest[issued.digest] = issued
        self._by_id[issued.id] = issued

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    async def issue(self, project_id: str, name: str = "") -> tuple[str, IssuedToken]:
        """(the secret, its record). The secret is shown once, to whoever asked."""
        secret = secrets.token_urlsafe(32)
        issued = IssuedToken(uuid.uuid4().hex, project_id, name, time.time(), self._digest(secret))
        if self.store is not None:
            await self.store.create(self.KIND, {"name": name, "sha256": issued.digest}, project_id, id=issued.id)
        self._add(issued)
        return secret, issued

    async def revoke(self, token_id: str) -> IssuedToken | None:
        issued = self._by_id.get(token_id)
        if issued is None:
            return None
        if self.store is not None:
            from kumoflow.store import NotFound
            with contextlib.suppress(NotFound):
                await self.store.delete(self.KIND, token_id)
        del self._by_id[token_id]
        self._by_digest.pop(issued.digest, None)
        return issued

    def get(self, token_id: str) -> IssuedToken | None:
        return self._by_id.get(token_id)

    def all(self) -> list[IssuedToken]:
        return sorted(self._by_id.values(), key=lambda t: t.created_at)

    def caller(self, token: str | None) -> Caller | None:
        if not token:
            return None
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Caller(admin=True)
        issued = self._by_digest.get(self._digest(token))
        if issued is None:
            return None
        return Caller(admin=False, project_id=issued.project_id, token_id=issued.id)


# --- the context every route gets --------------------------------------------------------------


class ApiContext:
    """What routes reach through `Ctx`: the controller and its core, the
    tokens, and per-module state (`extra`, e.g. the metrics registry)."""

    def __init__(self, controller: Any, tokens: Tokens, public: bool = False,
                 switch_timeout: float = 5.0, segment_ranges: dict | None = None) -> None:
        self.controller = controller
        self.core = getattr(controller, "core", controller)     # a runtime Controller, or a bare Core
        self.tokens = tokens
        self.public = public                 # served on a non-loopback address
        self.switch_timeout = switch_timeout  # seconds a switch has to answer a request of the API
        #: network type -> ((low, high), ...): the segmentation ids networks are allocated from
        #: (--segment-range; a type not named: its whole legal range)
        self.segment_ranges: dict = dict(segment_ranges or {})
        self.extra: dict[str, Any] = {}
        #: path prefix -> the shape of the errors answered under it (Neutron's elsewhere)
        self.error_shapes: dict[str, ErrorShape] = {}
        #: per switch session, what the API learned of it (its DESC reply, ...)
        self.switch_info: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        #: called when the server stops, before it waits for requests to end (the event
        #: stream ends its streams, which would otherwise hold the server open)
        self.on_stop: list[Callable[[], Any]] = []

    def error_shape(self, path: str) -> ErrorShape | None:
        return next((shape for prefix, shape in self.error_shapes.items() if path.startswith(prefix)), None)

    def wall_time(self, core_time: float) -> float:
        """A time of the core's clock (monotonic) as a time.time() value."""
        return time.time() - (self.core.now() - core_time)


def context_of(request: Request) -> ApiContext:
    return request.app.state.kumoflow


# The dependencies are coroutines: FastAPI runs a plain function dependency in a thread of
# its pool, two thread hand-offs per request for what is a dict lookup (about 1 ms a request).
async def get_context(request: Request) -> ApiContext:
    return context_of(request)


token_header = APIKeyHeader(name="X-Auth-Token", auto_error=False, scheme_name="token",
                            description="the admin token, or a project token issued by the admin")


async def get_caller(request: Request, token: Annotated[str | None, Security(token_header)] = None) -> Caller:
    """The caller named by X-Auth-Token: 401 without one or with an unknown one."""
    ctx = context_of(request)
    if not token:
        raise ApiError(401, "HTTPUnauthorized", "Authentication required: no X-Auth-Token header.")
    caller = ctx.tokens.caller(token)
    if caller is None:
        raise ApiError(401, "HTTPUnauthorized", "Authentication failed: the token is not valid.")
    return caller


async def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    """The admin, or 403 for a project token."""
    if not caller.admin:
        raise ApiError(403, "HTTPForbidden", "This needs the admin token; a project token may not do it.")
    return caller


Ctx = Annotated[ApiContext, Depends(get_context)]
ProjectCaller = Annotated[Caller, Depends(get_caller)]
AdminCaller = Annotated[Caller, Depends(get_admin)]


# --- the application ---------------------------------------------------------------------------


def build_app(controller: Any, *, admin_token: str | None = None, tokens: Tokens | None = None,
              public: bool = False, switch_timeout: float = 5.0,
              routers: list[str] | None = None, segment_ranges: dict | None = None) -> FastAPI:
    """The API of `controller` (a runtime Controller, or a Core for tests).
    Without `admin_token` (or `tokens`) a random admin token is made: read it
    from ``app.state.kumoflow.tokens.admin_token``. `segment_ranges`: network
    type -> ((low, high), ...) to allocate segmentation ids from (options.py
    parse_segment_ranges checks them); a type not named: its whole legal range."""
    from kumoflow import __version__

    tokens = tokens or Tokens(admin_token or secrets.token_urlsafe(32))
    ctx = ApiContext(controller, tokens, public=public, switch_timeout=switch_timeout,
                     segment_ranges=segment_ranges)
    app = FastAPI(title=TITLE, version=__version__, description=DESCRIPTION, docs_url=None, redoc_url=None)
    app.state.kumoflow = ctx
    _install_error_handlers(app)
    _install_docs(app)
    for name in ROUTER_MODULES if routers is None else routers:
        module = importlib.import_module(name)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app, ctx)
        app.include_router(module.router)
    app.openapi = lambda: _openapi(app)        # type: ignore[method-assign]
    return app


def _install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from files installed with fastapi-offline:
    nothing is fetched from a CDN, so the pages work on a machine offline."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount(STATIC, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{TITLE} API",
                                   swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{TITLE} API",
                              redoc_js_url=f"{STATIC}/redoc.standalone.js", redoc_favicon_url=f"{STATIC}/favicon.png",
                              with_google_fonts=False)


STATIC = "/static/docs"

_ERROR_DESCRIPTIONS = {
    "400": "The request does not validate (each invalid field in `detail`)",
    "401": "No X-Auth-Token, or one that is not valid",
    "403": "A project token where the admin token is needed",
    "404": "Not found",
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with Neutron's error body (or that of the path's `ErrorShape`) for
    every error an operation can return and no 422 (validation errors are 400 here)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    ctx: ApiContext = app.state.kumoflow
    for model in {NeutronError, *(shape.model for shape in ctx.error_shapes.values())}:
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schemas[model.__name__].pop("$defs", {}))
    _page_links(schema)
    for path, item in schema.get("paths", {}).items():
        shape = ctx.error_shape(path)
        name = shape.model.__name__ if shape is not None else "NeutronError"
        error = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            codes = []
            if op.get("parameters") or op.get("requestBody"):
                codes.append("400")
            if op.get("security"):
                codes += ["401", "403"]
            if "{" in path:
                codes.append("404")
            for code in codes:
                responses.setdefault(code, {"description": _ERROR_DESCRIPTIONS[code], **error})
            for code, response in responses.items():
                if code[0] in "45" and "content" not in response:
                    response.update(error)
    app.openapi_schema = schema
    return schema


def _page_links(schema: dict[str, Any]) -> None:
    """A list that takes ``limit`` (kumoflow.api.neutron.common.Paging) answers Neutron's
    ``<plural>_links`` beside ``<plural>`` when it is a page: say so in its answer's schema."""
    schemas = schema["components"]["schemas"]
    schemas["PageLink"] = {"title": "PageLink", "type": "object", "required": ["rel", "href"], "properties": {
        "rel": {"type": "string", "enum": ["next", "previous"], "title": "Rel"},
        "href": {"type": "string", "title": "Href", "description": "this list's URL with the marker (and "
                                                                   "page_reverse) of that page"}}}
    for item in schema.get("paths", {}).values():
        op = item.get("get")
        if op is None or not any(p.get("name") == "limit" for p in op.get("parameters", ())):
            continue
        ok = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
        ref = ok.get("schema", {}).get("$ref", "")
        model = schemas.get(ref.rpartition("/")[2])
        if model is None:
            continue
        properties = model.setdefault("properties", {})
        for name, prop in list(properties.items()):
            if prop.get("type") == "array" and not name.endswith("_links"):
                properties.setdefault(f"{name}_links", {
                    "type": "array", "items": {"$ref": "#/components/schemas/PageLink"},
                    "title": f"{name}_links", "description": "with limit: the next and previous pages"})


# --- serving -------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn's Server, leaving signals to the controller (which handles
    SIGINT and SIGTERM on the same loop and stops the API itself)."""

    @contextlib.contextmanager
    def capture_signals(self):   # type: ignore[override]
        yield


class ApiServer:
    """A running API: its address, the app, and `stop()`."""

    def __init__(self, app: FastAPI, server: Any, task: asyncio.Task, host: str, port: int,
                 https: bool = False) -> None:
        self.app, self.server, self.task = app, server, task
        self.host, self.port, self.https = host, port, https

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}"

    @property
    def context(self) -> ApiContext:
        return self.app.state.kumoflow

    async def stop(self) -> None:
        for fn in self.context.on_stop:
            try:
                fn()
            except Exception:
                log.exception("API: %r failed while stopping", fn)
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self.task.cancel()
        except Exception:
            log.exception("API server failed while stopping")


async def serve(controller: Any, host: str, port: int, *, app: FastAPI | None = None,
                **build_options: Any) -> ApiServer:
    """Serve the API of `controller` on host:port (0: a free port) as a task
    of the running loop; returns once it listens. `build_options` go to
    build_app (admin_token, tokens, public...); `tls_cert` and `tls_key` (paths): HTTPS, read once here."""
    tls_cert, tls_key = build_options.pop("tls_cert", None), build_options.pop("tls_key", None)
    if app is None:
        tokens = build_options.pop("tokens", None) or Tokens(build_options.pop("admin_token", None)
                                                             or secrets.token_urlsafe(32))
        store = getattr(controller, "store", None)
        if store is not None and tokens.store is None:
            await tokens.use_store(store)
        app = build_app(controller, tokens=tokens, **build_options)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    tls = {}
    if tls_cert:
        # TLS 1.2+ as everywhere in kumoflow (uvicorn's own default context allows older versions)
        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5, server_header=False, **tls)
    if tls:
        try:
            config.load()
        except (OSError, ValueError) as exc:          # ssl.SSLError is an OSError
            sock.close()
            raise OSError(f"the API's certificate {tls_cert} and key {tls_key}: {exc}") from None
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="kumoflow-api")
    while not server.started:
        if task.done():
            sock.close()
            task.result()        # raises what stopped it
            raise OSError(f"the API server on {host}:{port} stopped while starting")
        await asyncio.sleep(0.01)
    api = ApiServer(app, server, task, bound_host, bound_port, https=bool(tls))
    log.info("API on %s (docs at %s/docs)", api.url, api.url)
    return api


__all__ = ["ROUTER_MODULES", "AdminCaller", "ApiContext", "ApiError", "ApiServer", "Caller", "Ctx", "ErrorShape",
           "NeutronError", "ProjectCaller", "Tokens", "build_app", "error_response", "get_admin",
           "get_caller", "get_context", "is_loopback", "serve"]
