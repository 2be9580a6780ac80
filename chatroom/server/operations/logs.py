"""Log lines: text for a person at a terminal, or one JSON object per line for a machine.

A log call may name its event and fields (``extra=fields("login", name=..., peer=...)``); the
text format ignores them, the JSON one puts them first-class beside the message. JSON escapes
everything outside printable ASCII, so no name from the network can do anything to a reader's
terminal or parser.
"""

import datetime
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def fields(event: str, **values) -> dict:
    """The ``extra`` of a log call: its event's name and fields."""
    return {"event": event, "fields": values}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "event": getattr(record, "event", None) or record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


def configure(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
