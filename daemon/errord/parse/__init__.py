"""Parsing: raw log bytes into ``LogEvent``s (``lines``), exception details
(``tracebacks``) and the warnings about lines errord could not fully use
(``linewarnings``)."""
