"""`python -m servedmodel_operator.client ...`: the `servedmodel` command."""

import sys

from .cli import main

sys.exit(main())
