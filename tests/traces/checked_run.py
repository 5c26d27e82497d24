"""One moesim command on one damaged input, checked the way the catalogue and byte-flip tests
need: no crash, no hang, the exit code allowed, an error of one line naming the file, nothing
written after an error, the input unchanged, and memory within a bound. The bound: no process
over 8 GiB of address space (RLIMIT_AS) in a normal build; under AddressSanitizer, whose shadow
memory makes address-space limits meaningless, no single allocation over 2 GiB
(max_allocation_size_mb). Running out of memory inside the bound is a failure too."""
import hashlib
import os
import resource
import subprocess

LIMIT_BYTES = 8 << 30
SANITIZED = "ASAN_OPTIONS" in os.environ


def _environment():
    env = dict(os.environ)
    if SANITIZED:
        env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"] + ":max_allocation_size_mb=2048"
    return env


def _limit():
    if not SANITIZED:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run(moesim, cmd, path, extra, allowed, out_dir, out_name="out.h5"):
    """(what failed or None, the error line without its "moesim CMD: " prefix or None)."""
    before = digest(path)
    try:
        r = subprocess.run([moesim, cmd, path] + extra, capture_output=True, text=True, errors="replace",
                           timeout=60, env=_environment(), preexec_fn=_limit)
    except subprocess.TimeoutExpired:
        return "hung (60 s)", None
    err = r.stderr.splitlines()
    outputs = [n for n in os.listdir(out_dir) if n.startswith(out_name)]
    what = None
    if r.returncode not in allowed:
        what = f"exit {r.returncode}: {r.stderr[-300:]!r}"
    elif r.returncode == 2 and (len(err) != 1 or not err[0].startswith(f"moesim {cmd}: ") or path not in err[0]):
        what = f"stderr is not one line naming the file: {r.stderr!r}"
    elif "out of memory" in r.stderr:
        what = f"ran out of memory within the bound: {err[0]}"
    elif r.returncode == 2 and outputs:
        what = "an output was written"
    elif digest(path) != before:
        what = "the input changed"
    for n in outputs:
        os.remove(os.path.join(out_dir, n))
    return what, (err[0][len(f"moesim {cmd}: "):] if r.returncode == 2 and not what else None)
