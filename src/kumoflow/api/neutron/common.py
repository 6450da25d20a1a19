"""What every Neutron resource shares: the caller's project, visibility,
errors, the common attributes, list filters and ``fields=``, bulk bodies."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
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
           render: Callable[[Record], dict] | None = None, computed: frozenset[str] = frozenset()) -> list[dict]:
    """`items` that pass the query string's filters, rendered, with only its `fields`.

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
    return [pick(item, fields) for item in found] if fields else found


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
    """The OpenAPI parameters of a list operation: one per filterable attribute, and fields."""
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
}


def not_found(kind: str, id: str) -> ApiError:
    type, message = NOT_FOUND[kind]
    return ApiError(404, type, message.format(id))


def visible(caller: Caller, record: Record) -> bool:
    """Own resources; networks that are shared or external; shared QoS policies;
    subnets of a visible network are handled by the caller."""
    if owns(caller, record):
        return True
    body = record.body
    if record.kind == "network":
        return bool(body.get("shared") or body.get("router:external"))
    if record.kind == "qos_policy":
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
