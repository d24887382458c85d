"""Request bodies: attrs classes structured by cattrs from camelCase JSON, strictly.

Unknown keys are refused (so ``userId`` or ``id`` smuggled into a body never reach the
database), every field is type-checked, and attrs validators bound every string. Any failure
becomes one problem response listing each offending field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from smartpip.http.problems import ApiError

__all__ = ["FieldError", "bounded", "camel", "matches", "structure"]

T = TypeVar("T")


class FieldError(ValueError):
    """A validator's verdict on one field (raised from attrs validators)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


Validator = Callable[[Any, "attrs.Attribute[str]", str], None]


def bounded(limit: int) -> Validator:
    """An attrs validator: a string of 1 to ``limit`` characters."""

    def check(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
        if not 1 <= len(value) <= limit:
            raise FieldError(camel(attribute.name), f"must be 1 to {limit} characters")

    return check


def matches(pattern: re.Pattern[str], message: str) -> Validator:
    """An attrs validator: the whole string matches ``pattern``."""

    def check(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
        if not pattern.fullmatch(value):
            raise FieldError(camel(attribute.name), message)

    return check


def camel(name: str) -> str:
    """``code_verifier`` -> ``codeVerifier``."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)

    def is_str(value: Any, _type: type) -> str:
        # cattrs would turn 123 into "123"; a JSON API must not.
        if not isinstance(value, str):
            raise TypeError("must be a string")
        return value

    converter.register_structure_hook(str, is_str)

    def camel_case_fields(cls: type[Any]) -> Callable[[Any, Any], Any]:
        renames: dict[str, Any] = {
            f.name: override(rename=camel(f.name)) for f in attrs.fields(cls)
        }
        return make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **renames)

    converter.register_structure_hook_factory(attrs.has, camel_case_fields)
    return converter


_CONVERTER = _converter()


def _field_errors(error: BaseException) -> list[dict[str, str]]:
    """One ``{field, message}`` per problem cattrs found, fields in camelCase."""
    if isinstance(error, FieldError):  # a validator's verdict, wrapped by cattrs
        return [{"field": error.field, "message": error.message}]
    if isinstance(error, cattrs.ForbiddenExtraKeysError):
        return [{"field": key, "message": "unknown field"} for key in sorted(error.extra_fields)]
    if not isinstance(error, cattrs.ClassValidationError):
        return [{"field": "body", "message": str(error) or type(error).__name__}]
    with_notes, without_notes = error.group_exceptions()
    out: list[dict[str, str]] = []
    for exc, note in with_notes:
        field = camel(note.name)
        if isinstance(exc, KeyError):
            out.append({"field": field, "message": "required"})
        else:
            out.append({"field": field, "message": str(exc) or type(exc).__name__})
    for exc in without_notes:
        out.extend(_field_errors(exc))
    return out


def structure(data: Any, cls: type[T], *, status: int = 400) -> T:
    """Build ``cls`` from parsed JSON, or raise a problem naming each bad field.

    Raises:
        ApiError: ``status`` (400 ``invalid_request`` by default, 422 where the API says
            ``validation_failed``) with one entry per field (``body`` when it is no object).
    """
    if not isinstance(data, dict):
        errors = [{"field": "body", "message": "must be a JSON object"}]
        raise ApiError(status, "the body must be a JSON object", errors=errors)
    try:
        return _CONVERTER.structure(data, cls)
    except FieldError as error:
        errors = [{"field": error.field, "message": error.message}]
    except (cattrs.BaseValidationError, ValueError, TypeError) as error:
        errors = _field_errors(error)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    raise ApiError(status, f"invalid body: {detail}", errors=errors)
