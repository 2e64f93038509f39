import sys

from trend_core.cli import main

sys.exit(main())
