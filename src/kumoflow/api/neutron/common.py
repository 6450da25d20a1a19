"""What every Neutron resource shares: the caller's project, visibility,
errors, the common attributes, list filters, sorting, pagination and
``fields=``, bulk bodies."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from urllib.parse import urlencode
from typing import Annotated, Any, Callable

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from kumoflow.store import Record

from ..server import ApiError, Caller, Ctx, NeutronError, get_caller
from .db import NeutronDB

#: the project of what the admin creates without naming one
ADMIN_PROJECT = "admin"
PROJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME = Annotated[str, Field(max_length=255)]
DESCRIPTION = Annotated[str, Field(max_length=255)]
TAG = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^,]*$")]
#: a user-group tag (kumoflow's extension: a port's ``user_groups``, a firewall rule's ``*_user_group``)
USER_GROUP = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"


def new_id() -> str:
    return str(uuid.uuid4())


# --- the database and the caller ------------------------------------------------------------------


async def get_db(ctx: Ctx) -> NeutronDB:
    db = ctx.extra.get("neutron")
    if db is None:
        db = ctx.extra["neutron"] = NeutronDB(getattr(ctx.controller, "store", None))
    return await db.ready()


DB = Annotated[NeutronDB, Depends(get_db)]
Who = Annotated[Caller, Depends(get_caller)]


def project_of(caller: Caller, given: dict) -> str:
    """The project a new resource belongs to: the caller's; the admin may name another
    (``project_id`` or ``tenant_id``); a project naming another is 400, as in Neutron."""
    named = {given.get(k) for k in ("project_id", "tenant_id")} - {None}
    if len(named) > 1:
        raise ApiError(400, "HTTPBadRequest", "project_id and tenant_id do not match.")
    project = named.pop() if named else None
    if caller.admin:
        return project or ADMIN_PROJECT
    if project is not None and project != caller.project_id:
        raise ApiError(400, "HTTPBadRequest", "Specifying 'project_id' or 'tenant_id' other than the "
                                              "authenticated project in request requires admin privileges.")
    return caller.project_id or ADMIN_PROJECT


def caller_project(caller: Caller) -> str:
    return caller.project_id if not caller.admin else ADMIN_PROJECT


def owns(caller: Caller, record: Record) -> bool:
    return caller.admin or record.project_id == caller.project_id


def forbid(what: str) -> ApiError:
    return ApiError(403, "PolicyNotAuthorized", f"Rule {what} is disallowed by policy: it needs the admin token.")


def admin_only(caller: Caller, body: BaseModel, names: tuple[str, ...], action: str) -> None:
    if caller.admin:
        return
    for name in names:
        alias = type(body).model_fields[name].alias or name
        if name in body.model_fields_set:
            raise forbid(f"{action}:{alias}")


# --- errors -------------------------------------------------------------------------------------


def conflict(type: str, message: str, detail: str = "") -> ApiError:
    return ApiError(409, type, message, detail)


def bad(message: str, type: str = "InvalidInput", detail: str = "") -> ApiError:
    return ApiError(400, type, message if type != "InvalidInput" else f"Invalid input for operation: {message}",
                    detail)


def errors(*codes: int) -> dict:
    """OpenAPI responses with Neutron's error body."""
    text = {400: "Invalid request", 401: "No or an unknown X-Auth-Token", 403: "Not allowed for this token",
            404: "Not found (or of another project)", 409: "In conflict with what exists",
            503: "No free segmentation id (the range is exhausted)"}
    return {code: {"model": NeutronError, "description": text[code]} for code in codes}


# --- rendering ----------------------------------------------------------------------------------


def timestamp(text: str) -> str:
    """The store's ISO 8601 time as Neutron shows it (seconds, with Z)."""
    return text


def common(record: Record) -> dict:
    """id, project/tenant, times and revision number: every resource has them."""
    return {"id": record.id, "tenant_id": record.project_id, "project_id": record.project_id,
            "created_at": record.created_at, "updated_at": record.updated_at,
            "revision_number": record.body.get("_revision", 0)}


def shown(body: dict) -> dict:
    return {k: v for k, v in body.items() if not k.startswith("_")}


def answer(data: Any, status: int = 200) -> JSONResponse:
    """`data` as JSON; a `Page` (what `select` returns) under key K brings its links as
    ``K_links`` when it has any, as Neutron's paginated lists do."""
    if isinstance(data, dict) and any(isinstance(v, Page) for v in data.values()):
        out = {}
        for key, value in data.items():
            out[key] = value
            if isinstance(value, Page) and value.links:
                out[f"{key}_links"] = value.links
        data = out
    return JSONResponse(data, status_code=status)


def no_content() -> Response:
    return Response(status_code=204)


def bumped(body: dict) -> dict:
    """A body about to be updated: its revision number + 1."""
    return {**body, "_revision": body.get("_revision", 0) + 1}


# --- list filters and fields ----------------------------------------------------------------------

#: attribute types for filtering: str, bool, int, list (of text: matches a member), none (not filterable)
STR, BOOL, INT, LIST = "str", "bool", "int", "list"
_RESERVED = {"fields", "tags", "tags-any", "not-tags", "not-tags-any"}
#: the query parameters of sorting and pagination (never filters)
_PAGING = ("limit", "marker", "page_reverse", "sort_key", "sort_dir")


class Page(list):
    """A list answer: the resources, and Neutron's ``<plural>_links`` (``{"rel": "next" |
    "previous", "href": URL}``) when the request asked for a page (`answer` adds them)."""

    links: list[dict] = []


class Paging:
    """Sorting and pagination of a list, as Neutron does them.

    ``sort_key=K&sort_dir=asc|desc`` (repeatable, as many directions as keys: sorts by the first
    key, then the next...; null first when ascending); any sort, or a ``limit``, also sorts by
    ``id`` last, so that the order is total. ``limit=N`` (N >= 1) answers at most N, after the
    one whose id is ``marker`` (it must be one the caller sees: else 400), or before it with
    ``page_reverse=true`` (still in the list's order; without a marker: the last N). Without
    ``limit``, ``marker`` and ``page_reverse`` are ignored, as in Neutron. The links: ``next``
    (marker: the last of this page) unless the page is short going forward, ``previous``
    (marker: the first, page_reverse=True) unless it is short going backward; each is the
    request's URL with only marker and page_reverse changed."""

    def __init__(self, wanted: dict[str, list[str]], attrs: dict[str, str]) -> None:
        self.limit: int | None = None
        self.marker: str | None = None
        self.reverse = False
        limits = wanted.get("limit") or []
        if limits:
            text = limits[-1]
            try:
                self.limit = int(text)
            except ValueError:
                self.limit = None
            if self.limit is None or self.limit < 1:
                raise bad(f"Limit must be an integer 1 or greater and not '{text}'.", "HTTPBadRequest")
            self.marker = (wanted.get("marker") or [None])[-1] or None
            reverse = (wanted.get("page_reverse") or ["false"])[-1]
            if reverse.lower() not in ("true", "false"):
                raise bad(f"page_reverse must be true or false, not '{reverse}'.", "HTTPBadRequest")
            self.reverse = reverse.lower() == "true"
        keys = [k for k in wanted.get("sort_key", []) if k]
        dirs = [d for d in wanted.get("sort_dir", []) if d]
        if len(keys) != len(dirs):
            raise bad("The number of sort_keys and sort_dirs must be same.", "HTTPBadRequest")
        absent = [k for k in keys if attrs.get(k) not in (STR, BOOL, INT)]
        if absent:
            raise bad(f"{absent} is invalid attribute for sort_keys.", "HTTPBadRequest")
        invalid = [d for d in dirs if d not in ("asc", "desc")]
        if invalid:
            raise bad(f"{invalid} is invalid value for sort_dirs, valid value is 'asc' and 'desc'.",
                      "HTTPBadRequest")
        self.sorts = [(k, attrs[k], d == "asc") for k, d in zip(keys, dirs)]
        if (self.sorts or self.limit) and "id" not in keys:
            self.sorts.append(("id", STR, True))

    def sort(self, items: list[dict]) -> list[dict]:
        if not self.sorts:
            return items
        items = list(items)
        for name, kind, ascending in reversed(self.sorts):      # stable: the last key first
            items.sort(key=lambda item, n=name, k=kind: _sort_value(k, item.get(n)), reverse=not ascending)
        return items

    def page(self, request: Request, items: list[dict], marker_item: Callable[[], dict | None]) -> Page:
        """`items` (filtered, not yet sorted) sorted and cut to the page; `marker_item` gives the
        marker's resource (rendered), which `items` may not hold (a filter left it out)."""
        found = Page(self.sort(items))
        if self.limit is None:
            return found
        if self.marker is not None:
            at = next((i for i, item in enumerate(found) if item.get("id") == self.marker), None)
            if at is None:
                marker = marker_item()
                if marker is None:
                    raise bad(f"Marker {self.marker} is not the id of one of these resources (or not one this "
                              f"token sees).", "HTTPBadRequest")
                with_marker = self.sort([*found, marker])
                at = next(i for i, item in enumerate(with_marker) if item is marker)
                start = at                     # the first after the marker
            else:
                start = at + 1
            end = at                           # the last before the marker, + 1
        else:
            start, end = 0, len(found)
        if self.reverse:
            page = Page(found[max(end - self.limit, 0):end])
        else:
            page = Page(found[start:start + self.limit])
        short = len(page) < self.limit
        links = []
        if not (short and not self.reverse):
            links.append({"rel": "next", "href": self._href(request, page, False)})
        if not (short and self.reverse):
            links.append({"rel": "previous", "href": self._href(request, page, True)})
        page.links = links
        return page

    def _href(self, request: Request, page: list[dict], previous: bool) -> str:
        params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("marker", "page_reverse")]
        if page:                # an empty page's links have no marker (the first or the last page), as in Neutron
            params.append(("marker", (page[0] if previous else page[-1])["id"]))
        if previous:
            params.append(("page_reverse", "True"))
        return str(request.url.replace(query=urlencode(params)))


def _sort_value(kind: str, value: Any) -> tuple:
    """A value's place in an ascending sort: null first, then by the attribute's type."""
    if value is None:
        return (0, 0)
    if kind == INT and isinstance(value, (int, float)):
        return (1, value)
    if kind == BOOL:
        return (1, bool(value))
    return (2, str(value))


def _parse_bool(name: str, value: str) -> bool:
    low = value.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise bad(f"'{value}' cannot be converted to boolean (filter {name})", "HTTPBadRequest")


def _parse_int(name: str, value: str) -> int | None:
    if value in ("", "None", "null"):
        return None
    try:
        return int(value)
    except ValueError:
        raise bad(f"'{value}' is not an integer (filter {name})", "HTTPBadRequest") from None


def query_items(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def select(request: Request, items: list, attrs: dict[str, str],
           special: dict[str, Callable[[dict, list[str]], bool]] | None = None,
           render: Callable[[Record], dict] | None = None, computed: frozenset[str] = frozenset()) -> Page:
    """`items` that pass the query string's filters, rendered, sorted and cut to a page as it
    asks (`Paging`), with only its `fields`: a `Page`, whose links `answer` adds.

    `items` are rendered resources, or records with `render` (then filters on attributes not in
    `computed`, nor `special`, are tested on the record before it is rendered: a filtered list of
    many costs the matches, not the whole).

    ``?name=a&name=b`` keeps either (repeated keys are OR), different keys must all match (AND);
    a list attribute matches when one of its members is the value; ``tags=a,b`` needs all the
    tags, ``tags-any`` one of them, ``not-tags``/``not-tags-any`` the opposites. An attribute
    that cannot be filtered on is 400."""
    wanted: dict[str, list[str]] = {}
    for name, value in query_items(request):
        wanted.setdefault(name, []).append(value)
    fields = [f for value in wanted.pop("fields", []) for f in value.split(",") if f]
    paging = Paging({name: wanted.pop(name) for name in _PAGING if name in wanted}, attrs)
    early: list[tuple[str, Callable[[Any], bool]]] = []     # tested on the record, when given records
    late: list[Callable[[dict], bool]] = []                 # tested on the rendered resource
    for name, values in wanted.items():
        if name in _RESERVED:
            tags = {t for v in values for t in v.split(",") if t}
            if name == "tags":
                test = lambda have, t=tags: t <= set(have or ())
            elif name == "tags-any":
                test = lambda have, t=tags: bool(t & set(have or ()))
            elif name == "not-tags":
                test = lambda have, t=tags: not t <= set(have or ())
            else:
                test = lambda have, t=tags: not t & set(have or ())
            early.append(("tags", test))
            continue
        if special and name in special:     # tested on the record's body, or the rendered resource
            test = lambda item, test=special[name], values=values: test(item, values)
            if render is not None:
                early.append(("", test))
            else:
                late.append(test)
            continue
        kind = attrs.get(name)
        if kind is None:
            raise ApiError(400, "HTTPBadRequest", f"['{name}'] is invalid attribute for filtering.")
        if kind == BOOL:
            options = {_parse_bool(name, v) for v in values}
            test = lambda have, o=options: have in o and isinstance(have, bool)
        elif kind == INT:
            options = {_parse_int(name, v) for v in values}
            test = lambda have, o=options: have in o and not isinstance(have, bool)
        elif kind == LIST:
            options = set(values)
            test = lambda have, o=options: bool(o.intersection(map(str, have or ())))
        else:
            options = set(values)
            test = lambda have, o=options: ("" if have is None else str(have)) in o
        if render is not None and name not in computed:
            early.append((name, test))
        else:
            late.append(lambda item, n=name, test=test: test(item.get(n)))
    if render is not None:
        records = [r for r in items if all(test(_value(r, name)) for name, test in early)]
        found = [item for item in map(render, records) if all(test(item) for test in late)]
    else:
        found = [item for item in items if all(test(item.get(name)) for name, test in early)
                 and all(test(item) for test in late)]

    def marker_item() -> dict | None:
        for item in items:
            if (item.id if render is not None else item.get("id")) == paging.marker:
                return render(item) if render is not None else item
        return None

    page = paging.page(request, found, marker_item)
    if fields:
        picked = Page(pick(item, fields) for item in page)
        picked.links = page.links
        return picked
    return page


def _value(record: Record, name: str) -> Any:
    if name == "":
        return record.body
    if name == "id":
        return record.id
    if name in ("tenant_id", "project_id"):
        return record.project_id
    if name == "revision_number":
        return record.body.get("_revision", 0)
    return record.body.get(name)


def pick(item: dict, fields: list[str]) -> dict:
    return {k: item[k] for k in fields if k in item}


def fields_of(request: Request) -> list[str]:
    return [f for value in request.query_params.getlist("fields") for f in value.split(",") if f]


def list_parameters(attrs: dict[str, str], tags: bool = True) -> dict:
    """The OpenAPI parameters of a list operation: one per filterable attribute, fields, and
    sorting and pagination (`Paging`)."""
    params = []
    for name, kind in attrs.items():
        items: dict[str, Any] = {"type": "string"}
        if kind == BOOL:
            items["enum"] = ["true", "false", "True", "False"]
        elif kind == INT:
            items["pattern"] = "^-?[0-9]{1,18}$"
        params.append({"name": name, "in": "query", "required": False, "style": "form", "explode": True,
                       "description": f"only those whose {name} is one of these", "schema": {"type": "array",
                                                                                               "items": items}})
    if tags:
        for name, what in (("tags", "having all these tags"), ("tags-any", "having any of these tags"),
                           ("not-tags", "not having all these tags"), ("not-tags-any", "having none of these tags")):
            params.append({"name": name, "in": "query", "required": False, "description": f"only those {what} "
                           "(comma-separated)", "schema": {"type": "string"}})
    params.append({"name": "fields", "in": "query", "required": False, "style": "form", "explode": True,
                   "description": "only these attributes in the answer (repeatable or comma-separated)",
                   "schema": {"type": "array", "items": {"type": "string"}}})
    sortable = [name for name, kind in attrs.items() if kind in (STR, BOOL, INT)]
    params += [
        {"name": "sort_key", "in": "query", "required": False, "style": "form", "explode": True,
         "description": "sort by these attributes, the first first (as many sort_dir as sort_key)",
         "schema": {"type": "array", "items": {"type": "string", "enum": sortable}}},
        {"name": "sort_dir", "in": "query", "required": False, "style": "form", "explode": True,
         "description": "the direction of each sort_key", "schema": {"type": "array", "items": {
             "type": "string", "enum": ["asc", "desc"]}}},
        {"name": "limit", "in": "query", "required": False, "description": "at most this many; the answer's "
         "<plural>_links then give the next and previous pages", "schema": {"type": "integer", "minimum": 1}},
        {"name": "marker", "in": "query", "required": False, "description": "with limit: the page after the "
         "resource with this id (before it with page_reverse)", "schema": {"type": "string"}},
        {"name": "page_reverse", "in": "query", "required": False, "description": "with limit: the page before "
         "the marker (without one: the last page)", "schema": {"type": "string", "enum": [
             "true", "false", "True", "False"]}},
    ]
    return {"parameters": params}


def show_parameters() -> dict:
    return {"parameters": [{"name": "fields", "in": "query", "required": False, "style": "form", "explode": True,
                            "description": "only these attributes in the answer",
                            "schema": {"type": "array", "items": {"type": "string"}}}]}


# --- bodies ---------------------------------------------------------------------------------------


class Body(BaseModel):
    """A request body: unknown attributes are errors (400), as in Neutron."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def one_or_many(body: BaseModel, single: str, plural: str) -> tuple[list[Any], bool]:
    """([items], bulk?) of a create body with the singular or the plural key (exactly one)."""
    one, many = getattr(body, single), getattr(body, plural)
    if (one is None) == (many is None):
        raise bad(f"give either '{single}' (one) or '{plural}' (a list, bulk create)", "HTTPBadRequest")
    return ([one], False) if one is not None else (list(many), True)


def given(model: BaseModel) -> dict[str, Any]:
    """The attributes a body gave (by their API names, as JSON values), unset ones left out."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


NOT_FOUND = {
    "network": ("NetworkNotFound", "Network {} could not be found."),
    "subnet": ("SubnetNotFound", "Subnet {} could not be found."),
    "port": ("PortNotFound", "Port {} could not be found."),
    "router": ("RouterNotFound", "Router {} could not be found."),
    "security_group": ("SecurityGroupNotFound", "Security group {} does not exist."),
    "security_group_rule": ("SecurityGroupRuleNotFound", "Security group rule {} does not exist."),
    "qos_policy": ("QosPolicyNotFound", "QoS policy {} could not be found."),
    "qos_rule": ("QosRuleNotFound", "QoS rule {} could not be found."),
    "address_group": ("AddressGroupNotFound", "Address group {} could not be found."),
    "firewall_rule": ("FirewallRuleNotFound", "Firewall rule {} could not be found."),
    "firewall_policy": ("FirewallPolicyNotFound", "Firewall policy {} could not be found."),
    "firewall_group": ("FirewallGroupNotFound", "Firewall group {} could not be found."),
}


def not_found(kind: str, id: str) -> ApiError:
    type, message = NOT_FOUND[kind]
    return ApiError(404, type, message.format(id))


def visible(caller: Caller, record: Record) -> bool:
    """Own resources; networks that are shared or external; shared QoS policies and shared
    firewall rules, policies and groups; subnets of a visible network are handled by the caller."""
    if owns(caller, record):
        return True
    body = record.body
    if record.kind == "network":
        return bool(body.get("shared") or body.get("router:external"))
    if record.kind in ("qos_policy", "firewall_rule", "firewall_policy", "firewall_group"):
        return bool(body.get("shared"))
    return False


def find(db: NeutronDB, caller: Caller, kind: str, id: str, can_see: Callable[[Record], bool] | None = None
         ) -> Record:
    """The record if the caller may see it, else 404 (whether it exists or not)."""
    record = db.get(kind, id)
    if record is None or not (can_see or (lambda r: visible(caller, r)))(record):
        raise not_found(kind, id)
    return record


def find_own(db: NeutronDB, caller: Caller, kind: str, id: str, action: str,
             can_see: Callable[[Record], bool] | None = None) -> Record:
    """The record, to change it: 404 if not visible, 403 if visible but another project's."""
    record = find(db, caller, kind, id, can_see)
    if not owns(caller, record):
        raise forbid(f"{action}_{kind}")
    return record


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
