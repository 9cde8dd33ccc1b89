"""Structured logs: one JSON object per line (ts, level, logger, msg, then any `extra=` fields),
so a log shipper indexes order IDs and groups without parsing free text."""

from __future__ import annotations

import logging
import logging.config
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


def json_logging_config(level: int = logging.INFO) -> dict[str, Any]:
    """A `logging.config.dictConfig` for one JSON-lines handler on stderr at the root: for a
    server that configures logging itself in every process it starts (uvicorn's log_config)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # Names, not objects: a server pickles this to hand it to the workers it spawns.
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure_json_logging(level: int = logging.INFO) -> None:
    """Replace the root handlers with one JSON-lines handler on stderr. Idempotent."""
    logging.config.dictConfig(json_logging_config(level))
