"""Project tokens, issued and revoked by the admin.

    POST   /v2.0/tokens        {"token": {"project_id": "p1", "name": "ci"}}  -> 201, the secret once
    GET    /v2.0/tokens        every issued token (never the secrets)
    GET    /v2.0/tokens/{id}
    DELETE /v2.0/tokens/{id}   -> 204; the token stops working at once

A project token sees and changes only its project's resources (and shared
ones); the SDN view and these endpoints need the admin token. Issued tokens
are kept in the controller's desired-state store when it has one (kind
"token", the secret's sha256 only), so they survive a restart; a controller
with ``--store none`` keeps them in memory.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from .server import AdminCaller, ApiError, Ctx, IssuedToken

router = APIRouter(tags=["tokens"])

PROJECT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class TokenCreate(BaseModel):
    project_id: str = Field(pattern=PROJECT_ID, description="the project the token acts for")
    name: str = Field("", max_length=255, description="a label for people (who or what uses it)")


class TokenCreateRequest(BaseModel):
    token: TokenCreate


class Token(BaseModel):
    id: str = Field(description="names the token for listing and revoking; not the secret")
    project_id: str
    name: str
    created_at: datetime


class NewToken(Token):
    token: str = Field(description="the secret to send as X-Auth-Token; shown only here")


class NewTokenResponse(BaseModel):
    token: NewToken


class TokenResponse(BaseModel):
    token: Token


class TokenList(BaseModel):
    tokens: list[Token]


def _token(t: IssuedToken) -> dict:
    return {"id": t.id, "project_id": t.project_id, "name": t.name,
            "created_at": datetime.fromtimestamp(t.created_at, timezone.utc)}


@router.post("/v2.0/tokens", status_code=201, response_model=NewTokenResponse, summary="Issue a project token")
async def issue_token(body: TokenCreateRequest, ctx: Ctx, caller: AdminCaller) -> dict:
    secret, issued = await ctx.tokens.issue(body.token.project_id, body.token.name)
    return {"token": {**_token(issued), "token": secret}}


@router.get("/v2.0/tokens", response_model=TokenList, summary="List issued tokens")
async def list_tokens(ctx: Ctx, caller: AdminCaller) -> dict:
    return {"tokens": [_token(t) for t in ctx.tokens.all()]}


@router.get("/v2.0/tokens/{token_id}", response_model=TokenResponse, summary="Show an issued token")
async def show_token(token_id: str, ctx: Ctx, caller: AdminCaller) -> dict:
    issued = ctx.tokens.get(token_id)
    if issued is None:
        raise ApiError(404, "TokenNotFound", f"Token {token_id} could not be found.")
    return {"token": _token(issued)}


@router.delete("/v2.0/tokens/{token_id}", status_code=204, response_class=Response, summary="Revoke a token")
async def revoke_token(token_id: str, ctx: Ctx, caller: AdminCaller) -> Response:
    if await ctx.tokens.revoke(token_id) is None:
        raise ApiError(404, "TokenNotFound", f"Token {token_id} could not be found.")
    return Response(status_code=204)
