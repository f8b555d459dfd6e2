import sys

from qa.app.cli import main

sys.exit(main())
