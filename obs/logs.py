"""Structured logs: one line per record, with the ids that tie a line to its request, task or
feed passed as ``extra={"fields": {...}}``. LOG_FORMAT=json (the default: a JSON object a
line, for a log pipeline) or text (key=value, for people at a terminal)."""
from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname,
                "logger": record.name, "msg": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, tz=UTC)
        parts = [when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 record.levelname, record.name, record.getMessage()]
        parts += [f"{k}={_text(v)}" for k, v in getattr(record, "fields", {}).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return orjson.dumps(text).decode() if (" " in text or not text) else text


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def configure_logging(level: str, log_format: str = "json") -> None:
    """One line per record on stderr for the root logger, in ``log_format``; safe to call
    more than once."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h.formatter, tuple(FORMATTERS.values()))]
    if not ours:
        stderr = logging.StreamHandler()
        root.addHandler(stderr)
        ours = [stderr]
    for handler in ours:
        handler.setFormatter(FORMATTERS[log_format]())
    root.setLevel(level)
