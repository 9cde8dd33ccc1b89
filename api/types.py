"""Field types shared by several service areas, with their limits declared once, and how a handler
receives what api.dependencies gives it (`Injected`)."""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias, TypeVar

import msgspec
from litestar.di import Dependency
from litestar.params import PathParameter, QueryParameter, SkipValidationMarker

# No braces: they would break hash tags. The lookahead: Python's `$` also matches before a final
# newline (JSON Schema's does not), and an ID goes into records unescaped.
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$(?!\n)"

ProductId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
WarehouseId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
OrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]  # unknown IDs answer 404
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
# Free text is stored (PostgreSQL, and MongoDB through FerretDB on PostgreSQL, refuse U+0000: a
# writer would fail on it for good), logged and sent to customers: no control characters, but
# for tabs and line breaks in a message.
ONE_LINE: Final = r"^[^\x00-\x1f\x7f]*$"
LINES: Final = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=ONE_LINE)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]


class Location(msgspec.Struct, forbid_unknown_fields=True):
    lat: Latitude
    lon: Longitude


# Path and query parameters: the same limits, declared the way Litestar validates them.
ProductIdPath = Annotated[str, PathParameter(min_length=1, max_length=64, pattern=ID_PATTERN)]
WarehouseIdPath = Annotated[str, PathParameter(min_length=1, max_length=64, pattern=ID_PATTERN)]
AnyIdPath = Annotated[str, PathParameter(min_length=1, max_length=64)]
ProductIdQuery = Annotated[
    str, QueryParameter(name="productId", min_length=1, max_length=64, pattern=ID_PATTERN)
]

T = TypeVar("T")
# A handler's parameter given by api.dependencies, by its name, and passed as it is: the worker's
# own objects, with nothing in them for Litestar to validate.
Injected: TypeAlias = Annotated[T, Dependency(kind="named"), SkipValidationMarker()]
