"""``python -m defect_nas`` is the ``defect-nas`` command."""

import sys

from defect_nas.cli.main import main

sys.exit(main())
