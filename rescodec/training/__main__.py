import sys

from ..terminal import debugging, internal_error
from .train import main

try:
    sys.exit(main())
except KeyboardInterrupt:   # before the loop, which catches its own signals and saves
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)
except Exception as e:      # no traceback reaches a user: as rescodec's command line
    if debugging():
        raise
    print(f"error: {internal_error(e)}", file=sys.stderr)
    sys.exit(3)
