"""errord: turn error codes in JSON logs into deduplicated alerts and an incident history."""

__all__ = ["__version__"]

__version__ = "0.1.0"
