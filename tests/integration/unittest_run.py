# SPDX-License-Identifier: MIT
"""Run one integration test module for ctest: python3 unittest_run.py MODULE.

Like `python3 -m unittest -v MODULE`, with two differences:
- a skip is not a pass: the exit status is 0 when every test ran and passed,
  1 when one failed or errored (or none ran at all), and SKIP_EXIT (ctest's
  SKIP_RETURN_CODE, set in tests/integration/CMakeLists.txt) when none
  failed and at least one was skipped, so ctest lists the case as skipped.
  Each skip is printed as "SKIPPED: test: reason".
- the module's temp files go to a private TMPDIR (tempfile's and every
  child's), removed at the end; anything a test left in it fails the run,
  named, so a leak is fixed where it starts (ETRND_KEEP_TMP keeps it).
"""

import os
import shutil
import sys
import tempfile
import unittest

SKIP_EXIT = 77


# A short name: unix socket paths under it must stay within sun_path.
TMP_PREFIX = "it-"


def private_tmpdir():
    path = tempfile.mkdtemp(prefix=TMP_PREFIX)
    # Like /tmp, others may look inside: Postfix and a dropped-privilege
    # etrnd must reach their directories below it (mkdtemp makes it 0700).
    os.chmod(path, 0o755)
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path
    return path


def left_behind(path):
    """What the tests left in path (a few names, relative), then remove it
    unless ETRND_KEEP_TMP asks to keep it."""
    left = sorted(os.listdir(path))
    if os.environ.get("ETRND_KEEP_TMP"):
        sys.stderr.write("kept %s\n" % path)
        return []
    shutil.rmtree(path, ignore_errors=True)
    return left


def main(argv):
    if len(argv) != 2:
        print("usage: unittest_run.py MODULE", file=sys.stderr)
        return 2
    tmp = private_tmpdir()
    try:
        suite = unittest.defaultTestLoader.loadTestsFromName(argv[1])
        result = unittest.TextTestRunner(verbosity=2).run(suite)
    finally:
        left = left_behind(tmp)
    for test, why in result.skipped:
        print("SKIPPED: %s: %s" % (test.id(), why))
    if left:
        print("FAIL: %s left %d file(s) in its temp dir (removed now): %s"
              % (argv[1], len(left), " ".join(left[:10])))
        return 1
    if not result.wasSuccessful():
        return 1
    if result.testsRun == 0:
        print("%s: no test ran" % argv[1], file=sys.stderr)
        return 1
    if result.skipped:
        return SKIP_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
