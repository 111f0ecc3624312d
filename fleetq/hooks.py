"""``python -m fleetq.hooks NAME``: the entry point the installed git hooks call (a path they keep).

The hooks themselves live in fleetq.trust.hooks; this module only keeps the name that
hook scripts already written into people's clones and remotes depend on.
"""

import sys

from fleetq.trust.hooks import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
