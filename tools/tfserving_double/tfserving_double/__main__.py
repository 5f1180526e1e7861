"""``python -m tfserving_double --port=8500 --rest_api_port=8501 ...``: the server program."""

import sys

from .cli import main

sys.exit(main())
