"""Request bodies: JSON only, decoded strictly into each handler's msgspec struct, in one place.

Litestar on its own decodes any body as JSON whatever its media type, then converts it to the
handler's type non-strictly (`"quantity": "1"` becomes 1), and an undecodable body (nested too
deep, invalid UTF-8) escapes as a 500. Here the app's request class decodes every handler's
`data` from the raw bytes with one typed msgspec decoder per body type (strict: no coercion of
strings to numbers), after checking the media type; the handler signatures (`JSONBody[T]`) stay
as they are, so the OpenAPI schema still lists each route's body.

Errors: a body that is not `application/json` is 415 `unsupported_media_type` (a web page can send
text/plain or a form without a CORS preflight, but not JSON); a body that is not one JSON value
in UTF-8, nests deeper than MAX_JSON_DEPTH or repeats a key within an object is 400
`malformed_json`; valid JSON of the wrong shape is 400 `validation_error`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import UnionType
from typing import Any, Final, Union, get_args, get_origin

import msgspec
from litestar import Request

# What Request.content_type parses with: both ways into POST /orders read the header alike.
from litestar._multipart import parse_content_header
from litestar.exceptions import ValidationException
from msgspec import inspect as mi

JSON_MEDIA_TYPE: Final = "application/json"
# The deepest legitimate body (a basket: object > items array > object) has 3 levels.
MAX_JSON_DEPTH: Final = 16


class UnsupportedMediaType(Exception):
    """The body is not declared as application/json (UTF-8)."""


class MalformedJson(Exception):
    """The body is not one well-formed JSON value within the limits above."""


@dataclass(frozen=True, slots=True)
class BodyDecoder:
    """Decodes one body type. `quoted_keys` are the keys the type can hold, each as it appears
    in the raw text (`b'"productId"'`), or None when the type admits keys it does not name
    (a dict, Any), for which every body is checked for duplicate keys the slow way."""

    body_type: Any
    decoder: msgspec.json.Decoder[Any]
    quoted_keys: tuple[bytes, ...] | None

    @classmethod
    def of(cls, body_type: Any) -> BodyDecoder:
        keys = _closed_keys(body_type)
        quoted = None if keys is None else tuple(f'"{key}"'.encode() for key in sorted(keys))
        return cls(body_type, msgspec.json.Decoder(body_type, strict=True), quoted)

    def decode(self, raw: bytes) -> Any:
        try:
            value = self.decoder.decode(raw)
        except msgspec.ValidationError as exc:
            # A type error can come before a syntax error further on: syntax is reported first.
            return self._convert(check_json_text(raw), exc)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise MalformedJson(f"request body is not valid JSON: {exc}") from exc
        if self._may_repeat_a_key(raw):
            check_json_text(raw)
        return value

    def _convert(self, parsed: Any, error: msgspec.ValidationError) -> Any:
        """JSON has one number type, and JSON Schema counts 5.0 as an integer: a whole number
        written with a fraction is taken where an integer is expected (msgspec's strict decoder
        refuses it). A string is never a number: the conversion stays strict, and a body with
        no such number fails it again with the decoder's own error."""
        try:
            return msgspec.convert(_whole_floats_as_ints(parsed), self.body_type, strict=True)
        except msgspec.ValidationError as exc:
            raise _invalid_body(exc) from error

    def _may_repeat_a_key(self, raw: bytes) -> bool:
        """msgspec keeps the last of two equal keys; telling whether the text had two costs a
        second parse, so it is done only when a duplicate is possible. The decode succeeded and
        every struct forbids unknown fields, so each key in the text is one of `quoted_keys`;
        without a backslash no string has an escape, so a key repeated within an object shows
        as its quoted name twice in the text. Single orders (the hot path) pass both tests."""
        if self.quoted_keys is None or b"\\" in raw:
            return True
        # A plain loop: any() over a generator costs more, on every order.
        for quoted in self.quoted_keys:  # noqa: SIM110
            if raw.count(quoted) > 1:
                return True
        return False


def check_json_text(raw: bytes) -> Any:
    """The JSON value in `raw`; MalformedJson unless it is one JSON value in UTF-8, nested at
    most MAX_JSON_DEPTH levels, with no key twice in one object. The slow path."""
    try:
        # msgspec's own grammar, the one the typed decoders read: what it refuses is malformed
        # whatever the type (invalid UTF-8, a lone surrogate, NaN, trailing text).
        value = msgspec.json.decode(raw)
    except RecursionError as exc:
        raise MalformedJson(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"request body is not valid JSON: {exc}") from exc
    if _depth(value) > MAX_JSON_DEPTH:
        raise MalformedJson(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        # Python's parser sees every key of an object (msgspec keeps the last of two equal ones);
        # the text is known to be valid JSON and shallow by now.
        _EVERY_KEY_ONCE.decode(raw.decode("utf-8"))
    except ValueError as exc:
        raise MalformedJson(f"request body is not valid JSON: {exc}") from exc
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in an object")
            seen.add(key)
    return obj


_EVERY_KEY_ONCE: Final = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _depth(value: Any) -> int:
    """Levels of nested arrays and objects (a scalar is 0), without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in item)
    return deepest


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _whole_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(item) for item in value]
    return value  # recursion is bounded: the value is at most MAX_JSON_DEPTH deep


def _invalid_body(exc: msgspec.ValidationError) -> ValidationException:
    # msgspec says "Expected `int`, got `str` - at `$.quantity`": the same details Litestar gives
    # for its own validation errors ({"message", "key", "source"}).
    message, _, where = str(exc).partition(" - at `$")
    key = where.rstrip("`").lstrip(".")
    detail: dict[str, str] = {"message": message, "source": "body"}
    if key:
        detail["key"] = key
    return ValidationException(detail=f"invalid request body: {exc}", extra=[detail])


# Types whose keys a body can choose (or that msgspec does not walk): no closed key set.
_OPEN_TYPES: Final = (
    mi.DictType,
    mi.AnyType,
    mi.TypedDictType,
    mi.DataclassType,
    mi.NamedTupleType,
    mi.CustomType,
    mi.RawType,
)


def _closed_keys(body_type: Any) -> frozenset[str] | None:
    """Every key a body of this type can hold, or None when it admits keys it does not name."""
    keys: set[str] = set()
    seen: set[type] = set()
    todo = [mi.type_info(body_type)]
    while todo:
        info = todo.pop()
        if isinstance(info, mi.StructType):
            if not info.forbid_unknown_fields:
                return None
            if info.cls not in seen:
                seen.add(info.cls)
                keys.update(field.encode_name for field in info.fields)
                todo.extend(field.type for field in info.fields)
        elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            todo.append(info.item_type)
        elif isinstance(info, mi.TupleType):
            todo.extend(info.item_types)
        elif isinstance(info, mi.UnionType):
            todo.extend(info.types)
        elif isinstance(info, mi.Metadata):
            todo.append(info.type)
        elif isinstance(info, _OPEN_TYPES):
            return None
    return frozenset(keys)


@dataclass(frozen=True, slots=True)
class ChoiceDecoder:
    """Decodes a body that is one of several structs (`A | B`, which msgspec cannot decode
    untagged): a later one when the body's text holds a required key of it that the first does
    not have (POST /orders: `"items"` makes a basket), else the first. The probe is a byte
    search, so the first, the hot path, pays one scan of the body; a body chosen wrongly by it
    (a product named `items`) is decoded as the other kind before its error is answered."""

    first: BodyDecoder
    others: tuple[tuple[tuple[bytes, ...], BodyDecoder], ...]  # (its own keys, quoted; decoder)

    @classmethod
    def of(cls, choices: tuple[Any, ...]) -> ChoiceDecoder:
        first, *others = choices
        first_keys = _required_keys(first)
        return cls(
            BodyDecoder.of(first),
            tuple(
                (
                    tuple(f'"{key}"'.encode() for key in sorted(_required_keys(o) - first_keys)),
                    BodyDecoder.of(o),
                )
                for o in others
            ),
        )

    def decode(self, raw: bytes) -> Any:
        chosen = self._probe(raw)
        if chosen is self.first:
            return chosen.decode(raw)
        try:
            return chosen.decode(raw)
        except ValidationException as refused:
            try:
                return self.first.decode(raw)
            except ValidationException:
                raise refused from None  # answered in the words of the kind the probe chose

    def _probe(self, raw: bytes) -> BodyDecoder:
        # Plain loops, not generators: this runs on every order.
        for keys, decoder in self.others:
            for key in keys:
                if key in raw:
                    return decoder
        return self.first


def _required_keys(struct_type: Any) -> frozenset[str]:
    info = mi.type_info(struct_type)
    if not isinstance(info, mi.StructType):
        raise TypeError(f"{struct_type!r}: a choice of bodies must be a union of structs")
    return frozenset(field.encode_name for field in info.fields if field.required)


_DECODERS: dict[Any, BodyDecoder | ChoiceDecoder] = {}


def decoder_for(body_type: Any) -> BodyDecoder | ChoiceDecoder:
    """One decoder per body type, built at the first request that needs it."""
    decoder = _DECODERS.get(body_type)
    if decoder is None:
        choices = get_args(body_type) if get_origin(body_type) in (Union, UnionType) else ()
        decoder = ChoiceDecoder.of(choices) if choices else BodyDecoder.of(body_type)
        _DECODERS[body_type] = decoder
    return decoder


def check_media_type(content_type: tuple[str, dict[str, str]]) -> None:
    media_type, options = content_type
    charset = options.get("charset", "utf-8").lower()
    if media_type.lower() != JSON_MEDIA_TYPE or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(
            f"the body must be {JSON_MEDIA_TYPE} (UTF-8); got {media_type or 'no Content-Type'}"
        )


def check_content_type(header: str) -> None:
    """check_media_type for a raw Content-Type header, parsed as Litestar's requests parse it."""
    if header not in _ACCEPTED_CONTENT_TYPES:
        check_media_type(parse_content_header(header))
        # Clients send one header value over and over: parse each accepted one once.
        if len(_ACCEPTED_CONTENT_TYPES) < _ACCEPTED_CONTENT_TYPES_MAX:
            _ACCEPTED_CONTENT_TYPES.add(header)


_ACCEPTED_CONTENT_TYPES: set[str] = set()
_ACCEPTED_CONTENT_TYPES_MAX: Final = 64


class StrictJsonRequest(Request[Any, Any, Any]):
    """The app's request class: its `json()` is what Litestar calls to get a handler's `data`
    (only when the body is not empty), and here returns the handler's struct, decoded strictly.
    Litestar then finds a value already of the declared type and passes it through."""

    async def json(self) -> Any:
        data_field = self.route_handler.parsed_data_field
        if data_field is None:  # a handler without `data` never asks; keep Litestar's meaning
            return await super().json()
        check_media_type(self.content_type)
        return decoder_for(data_field.annotation).decode(await self.body())
