"""What the capture tests share: tools/python on the path, the arguments ctest passes
(MOESIM TMP_DIR), a failure list that does not stop at the first failure, and moesim runs."""
import os
import subprocess
import sys

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "python")
sys.path.insert(0, PACKAGE)
moesim, tmp = sys.argv[1:3]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    """(exit code, stdout + stderr) of one moesim command."""
    r = subprocess.run([moesim, *args], capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


def finish(summary="ok"):
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print(summary)
