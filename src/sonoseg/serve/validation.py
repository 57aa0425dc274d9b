"""422 answers that never echo what was submitted: FastAPI's default validation error carries each
failing field's ``input`` (a password that is too short, say) back to the client and into any log of
the response. Only where and why it failed are returned."""

from __future__ import annotations

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

KEPT = ("type", "loc", "msg")  # not "input" (the submitted value) nor "ctx" (may quote it too)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in KEPT if k in e} for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)


def install(app) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
