import sys

from flexlog.cli.main import main

sys.exit(main())
