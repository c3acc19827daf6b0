"""``python -m errord`` is the same as the ``errord`` console script."""

from errord.cli import main

raise SystemExit(main())
