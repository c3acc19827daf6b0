"""structlog writing errord-ready JSON lines (copy this module into your app).

    from structlog_errord import configure
    log = configure("/var/log/myapp/app.jsonl")
    log.error("db down", error_code="db_down")                                        # raise
    log.error("db down", error_code="db_down", re_alert_time=timedelta(minutes=15))   # re-alert interval
    log.info("db back", error_code_clear="db_down")                                   # clear

Each call writes one JSON object per line: ``event`` (the message), ``level``,
``timestamp`` (ISO-8601 UTC) and your keys. A ``timedelta`` is written as its repr,
``"datetime.timedelta(seconds=900)"``, which errord reads as 15 minutes. An ``enum.Enum``
member (``error_code=Code.DB_DOWN``, as in-app error-code managers often had) is written
as its value, ``"db_down"``: JSONRenderer alone would write its repr,
``"<Code.DB_DOWN: 'db_down'>"``, and errord would open an incident under that name.

The file goes through the standard library's ``WatchedFileHandler`` (set up with
``logging.config.dictConfig``), which reopens the file after logrotate renamed it
(``create`` mode), and ``structlog.stdlib.ProcessorFormatter`` renders the records of
plain ``logging`` calls (your libraries) as the same JSON, so one file holds both.
"""

from __future__ import annotations

import enum
import logging
import logging.config
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure", "enum_values", "logging_config"]


def enum_values(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every ``enum.Enum`` value becomes its ``.value``."""
    for key, value in event_dict.items():
        if isinstance(value, enum.Enum):
            event_dict[key] = value.value
    return event_dict


# Shared by structlog's own calls and by foreign (stdlib) records.
_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def logging_config(path: str, level: str = "INFO") -> dict[str, Any]:
    """The ``dictConfig`` for a JSON-lines file at ``path``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,  # a traceback as one JSON string
                    enum_values,  # here, so stdlib extra={...} values are converted too
                    structlog.processors.JSONRenderer(),
                ],
                # stdlib records: their extra={...} keys (error_code, ...) become JSON keys too
                "foreign_pre_chain": [*_PRE_CHAIN, structlog.stdlib.ExtraAdder()],
            },
        },
        "handlers": {
            "errord": {
                "class": "logging.handlers.WatchedFileHandler",
                "filename": path,
                "encoding": "utf-8",
                "formatter": "json",
            },
        },
        "root": {"level": level, "handlers": ["errord"]},
    }


def configure(path: str, level: str = "INFO") -> Any:
    """Route structlog and stdlib logging to ``path`` as JSON lines; returns a logger."""
    logging.config.dictConfig(logging_config(path, level))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_PRE_CHAIN,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger()
