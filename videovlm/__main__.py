import sys

from videovlm.cli import main

sys.exit(main())
