import os
import sys

from .train import main

try:
    sys.exit(main())
except KeyboardInterrupt:   # before the loop, which catches its own signals and saves
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)
except Exception as e:      # no traceback reaches a user: as rescodec's command line
    if os.environ.get("RESCODEC_DEBUG"):
        raise
    print(f"error: internal error: {type(e).__name__}: {e} (set RESCODEC_DEBUG=1 for details)", file=sys.stderr)
    sys.exit(3)
