"""``python -m errord`` is the same as the ``errord`` console script."""

from errord.launch import main

raise SystemExit(main())
