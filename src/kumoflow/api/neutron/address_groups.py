"""/v2.0/address-groups: named sets of CIDRs, in Neutron's shape (the address-group extension).

A group holds ``addresses`` (IPv4 and IPv6 CIDRs; an address alone is its /32
or /128), changed only by ``PUT .../add_addresses`` and ``.../remove_addresses``
(``{"addresses": [...]}``, all or nothing); ``PUT`` changes ``name``,
``description`` and ``tags``. As in Neutron, adding an address the group has is 400
AddressesAlreadyExist, removing one it lacks 404 AddressesNotFound.

kumoflow's extension: ``country: "DE"`` on create fills the group from the
country's file in the directory named by the environment variable
``KUMOFLOW_COUNTRIES`` (``DE.txt`` or ``de.txt``, one CIDR per line, ``#``
comments: kumoflow.apps.addresses). The file is read once, at creation: the
group holds its addresses from then on, so every controller sharing the store
sees the same set whether or not it has the file.

What the user gave is stored (each entry in its canonical text, duplicates
dropped), not its aggregate: the firewall aggregates when it compiles. Every
entry is checked on the way in, and every bad one named in one answer
(``address_group.addresses[3]: ...``). Groups are project-scoped: another
project's is 404. A group that a rule refers to (a security group rule's
``remote_address_group_id``, a firewall rule's ``source_address_group_id`` or
``destination_address_group_id``) cannot be deleted (409 AddressGroupInUse).
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.apps import addresses as addrs
from kumoflow.store import Record

from ..server import ApiError, Caller
from .common import (DB, DESCRIPTION, INT, LIST, NAME, PROJECT_PATTERN, STR, TAG, Body, Who, answer, bad, bumped,
                     common, conflict, errors, fields_of, given, list_parameters, new_id, no_content, one_or_many, owns,
                     pick, project_of, select, show_parameters, shown)
from .db import NeutronDB

router = APIRouter(tags=["address groups"])

#: the environment variable naming the directory of country files
COUNTRIES_ENV = "KUMOFLOW_COUNTRIES"
#: the most addresses one group (and one request) holds (a large country's list is some tens of thousands)
MAX_ADDRESSES = 200_000
ADDRESS = Annotated[str, Field(max_length=64)]
ADDRESSES = Annotated[list[ADDRESS], Field(max_length=MAX_ADDRESSES)]


class GroupCreate(Body):
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tags: list[TAG] = Field(default_factory=list, max_length=50)
    addresses: ADDRESSES | None = Field(None, description="CIDRs or addresses, IPv4 and IPv6")
    country: str | None = Field(None, pattern=addrs.COUNTRY_PATTERN, description="kumoflow: fill the group "
                                "from this country's file (a two-letter code) instead of `addresses`")


class GroupUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    tags: list[TAG] | None = Field(None, max_length=50)
    addresses: list | None = Field(None, description="not here: use add_addresses and remove_addresses")
    country: str | None = Field(None, description="fixed at creation")


class GroupCreateRequest(Body):
    address_group: GroupCreate | None = None
    address_groups: list[GroupCreate] | None = Field(None, min_length=1, max_length=1000)


class GroupUpdateRequest(Body):
    address_group: GroupUpdate


class AddressesRequest(Body):
    addresses: Annotated[list[ADDRESS], Field(min_length=1, max_length=MAX_ADDRESSES)]


class Group(BaseModel):
    """An address group (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    tags: list[str] = None
    addresses: list[str] = None
    country: str | None = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class GroupResponse(BaseModel):
    address_group: Group


class GroupList(BaseModel):
    address_groups: list[Group]


ATTRS = {"id": STR, "name": STR, "description": STR, "tenant_id": STR, "project_id": STR, "country": STR,
         "addresses": LIST, "revision_number": INT}


def view(r: Record) -> dict:
    return {**common(r), "tags": [], **shown(r.body)}          # (stored before tags, a record lacks them)


def _find(db: NeutronDB, caller: Caller, id: str) -> Record:
    record = db.get("address_group", id)
    if record is None or not owns(caller, record):
        raise ApiError(404, "AddressGroupNotFound", f"Address group {id} could not be found.")
    return record


async def canonical(items: list[str], where: str) -> list[str]:
    """Each entry's canonical text (``192.0.2.7`` -> ``192.0.2.7/32``), duplicates dropped, in the
    order given; 400 naming every bad entry. Parsed in a thread: 200,000 entries take a second or
    two, which the controller's event loop should not wait for in one piece."""
    try:
        networks = await asyncio.to_thread(addrs.parse_list, items, where)
    except addrs.AddressError as exc:
        raise _refused(exc.problems) from None
    return list(dict.fromkeys(map(str, networks)))


def _refused(problems: list[str]) -> ApiError:
    """400 naming the first bad entries in the message, every one in the detail."""
    first = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more (see detail)" if len(problems) > 3 else "")
    return bad(f"{len(problems)} bad entr{'y' if len(problems) == 1 else 'ies'}: {first}", detail="\n".join(problems))


async def country_addresses(code: str) -> list[str]:
    """The country's list from the directory of ``$KUMOFLOW_COUNTRIES``, as canonical text; 400
    when there is none, or the file has bad lines (each named)."""
    directory = os.environ.get(COUNTRIES_ENV)
    if not directory:
        raise bad(f"country {code.upper()}: no country lists here: the controller needs {COUNTRIES_ENV}=DIR "
                  f"(a directory of files named by country code, such as DE.txt)", "BadRequest")
    try:
        networks = await asyncio.to_thread(addrs.load_country, directory, code)
    except addrs.AddressError as exc:
        raise _refused(exc.problems) from None
    except (OSError, ValueError) as exc:
        raise bad(str(exc), "BadRequest") from None
    if len(networks) > MAX_ADDRESSES:
        raise bad(f"country {code.upper()}: {len(networks)} entries, more than a group holds ({MAX_ADDRESSES})")
    return list(dict.fromkeys(map(str, networks)))


@router.post("/v2.0/address-groups", status_code=201, summary="Create an address group (or several: bulk)",
             response_model=GroupResponse | GroupList, responses=errors())
async def create_groups(body: GroupCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "address_group", "address_groups")
    if sum(len(item.addresses or ()) for item in items) > MAX_ADDRESSES:
        raise bad(f"more than {MAX_ADDRESSES} addresses in one request")
    made = []
    for i, item in enumerate(items):             # everything checked (and files read) before anything is written
        where = f"address_groups[{i}]" if bulk else "address_group"
        project = project_of(caller, given(item))
        if item.country is not None and item.addresses is not None:
            raise bad(f"{where}: give addresses or country, not both")
        if item.country is not None:
            found, country = await country_addresses(item.country), item.country.upper()
        else:
            found, country = await canonical(item.addresses or [], f"{where}.addresses"), None
        made.append(({"name": item.name, "description": item.description, "addresses": found,
                      "country": country, "tags": list(item.tags)}, project))
    ops = [("create", "address_group", group, project, new_id()) for group, project in made]
    async with db.lock:
        changes = await db.commit(ops)
    views = [view(c.record) for c in changes]
    return answer({"address_groups": views} if bulk else {"address_group": views[0]}, 201)


@router.get("/v2.0/address-groups", summary="List address groups", response_model=GroupList, responses=errors(),
            openapi_extra=list_parameters(ATTRS))
async def list_groups(request: Request, db: DB, caller: Who) -> dict:
    records = [r for r in db.all("address_group") if owns(caller, r)]
    return answer({"address_groups": select(request, records, ATTRS, render=view)})


@router.get("/v2.0/address-groups/{address_group_id}", summary="Show an address group",
            response_model=GroupResponse, responses=errors(404), openapi_extra=show_parameters())
async def show_group(address_group_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = view(_find(db, caller, address_group_id))
    fields = fields_of(request)
    return answer({"address_group": pick(item, fields) if fields else item})


@router.put("/v2.0/address-groups/{address_group_id}", summary="Update an address group's name, description or tags",
            response_model=GroupResponse, responses=errors(404))
async def update_group(address_group_id: str, body: GroupUpdateRequest, db: DB, caller: Who) -> dict:
    values = given(body.address_group)
    if "addresses" in values:
        raise bad("addresses cannot be changed by PUT: use PUT .../add_addresses and .../remove_addresses")
    if "country" in values:
        raise bad("country is fixed at creation: make a new group")
    for name, value in values.items():
        if value is None:
            raise bad(f"{name} must not be null")
    async with db.lock:
        record = _find(db, caller, address_group_id)
        [change] = await db.commit([("update", "address_group", record.id, bumped({**record.body, **values}))])
    return answer({"address_group": view(change.record)})


@router.delete("/v2.0/address-groups/{address_group_id}", status_code=204, summary="Delete an address group",
               response_class=Response, responses=errors(404, 409))
async def delete_group(address_group_id: str, db: DB, caller: Who):
    async with db.lock:
        _find(db, caller, address_group_id)
        users = db.referring("address_group", address_group_id)
        if users:
            what = "firewall rules" if users[0].kind == "firewall_rule" else "security group rules"
            raise conflict("AddressGroupInUse", f"Address group {address_group_id} is in use on one or more {what}.")
        await db.commit([("delete", "address_group", address_group_id)])
    return no_content()


@router.put("/v2.0/address-groups/{address_group_id}/add_addresses", summary="Add addresses to a group",
            response_model=GroupResponse, responses=errors(404))
async def add_addresses(address_group_id: str, body: AddressesRequest, db: DB, caller: Who) -> dict:
    new = await canonical(body.addresses, "addresses")
    async with db.lock:
        record = _find(db, caller, address_group_id)
        have = record.body["addresses"]
        present = set(have).intersection(new)
        if present:
            shown_ = sorted(present)
            raise bad(f"Addresses {shown_[:10]}{' ...' if len(shown_) > 10 else ''} already exist in the address "
                      f"group {record.id}.", "AddressesAlreadyExist")
        [change] = await db.commit([("update", "address_group", record.id,
                                     bumped({**record.body, "addresses": [*have, *new]}))])
    return answer({"address_group": view(change.record)})


@router.put("/v2.0/address-groups/{address_group_id}/remove_addresses", summary="Remove addresses from a group",
            response_model=GroupResponse, responses=errors(404))
async def remove_addresses(address_group_id: str, body: AddressesRequest, db: DB, caller: Who) -> dict:
    gone = set(await canonical(body.addresses, "addresses"))
    async with db.lock:
        record = _find(db, caller, address_group_id)
        have = record.body["addresses"]
        missing = sorted(gone.difference(have))
        if missing:
            raise ApiError(404, "AddressesNotFound", f"Addresses {missing[:10]}{' ...' if len(missing) > 10 else ''} "
                                                     f"not found in the address group {record.id}.")
        [change] = await db.commit([("update", "address_group", record.id,
                                     bumped({**record.body, "addresses": [a for a in have if a not in gone]}))])
    return answer({"address_group": view(change.record)})


__all__ = ["router", "COUNTRIES_ENV", "MAX_ADDRESSES"]
