import sys

from fleetq.cli.app import main

sys.exit(main())
