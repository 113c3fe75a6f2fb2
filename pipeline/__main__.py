"""``python -m pipeline``: the Beam pipeline is not built yet (see README, Status)."""

import sys


def main() -> int:
    print("The Beam pipeline (discover -> tile -> RunInference -> COG mosaics) is not "
          "implemented yet; only the glcm/ core is. See README.md, 'Status'.",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
