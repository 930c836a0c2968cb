"""Fail CI when the PostgreSQL half of the suite was skipped or empty."""

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    # Our own pytest report, not untrusted input.
    cases = ET.parse(path).getroot().iter("testcase")  # noqa: S314
    ran = skipped = 0
    for case in cases:
        if "[postgresql" not in case.get("name", ""):
            continue
        if case.find("skipped") is not None:
            skipped += 1
        else:
            ran += 1
    print(f"PostgreSQL tests: {ran} ran, {skipped} skipped")
    if ran == 0 or skipped:
        print("the PostgreSQL run is required in CI", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
