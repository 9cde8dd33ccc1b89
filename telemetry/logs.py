"""Structured logs: one JSON object per line (ts, level, logger, msg, then any `extra=` fields),
so a log shipper indexes order IDs and groups without parsing free text."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted.
# uvicorn adds its message again with terminal colours (`color_message`): not worth a field.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)
_encoder: Final = msgspec.json.Encoder(enc_hook=str)  # an odd extra value becomes its str()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return _encoder.encode(line).decode()


def configure_json_logging(level: int = logging.INFO) -> None:
    """Replace the root handlers with one JSON-lines handler on stderr. Idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
