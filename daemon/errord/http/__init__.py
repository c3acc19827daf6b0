"""The HTTP side of errord (CONTRACT §10): the JSON API, the status page, ``/metrics`` and
``/healthz`` from one threaded server (``server``), who may do what (``auth``)."""

__all__: list[str] = []
