"""``python -m certmint.cli``: the same as the ``certmint`` console script."""

from certmint.cli.main import main

raise SystemExit(main())
