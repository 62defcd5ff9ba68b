"""``python -m sciml_recipes ...`` is the ``sciml`` command."""

from sciml_recipes.cli import main

raise SystemExit(main())
