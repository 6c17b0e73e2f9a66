"""Inside the sandbox: set the resource limits, leave root if started as root, then run the command.

This file runs as a script under the sandbox's interpreter and imports only the standard library.
The process limit is set here, after bubblewrap created the user namespace: since Linux 5.14
``RLIMIT_NPROC`` counts the processes of a user namespace, so the cap covers the sandbox alone and
not every process the user runs. Root is exempt from ``RLIMIT_NPROC``, so when the sandbox starts
as root it switches to an unprivileged uid first.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys


def main(argv: list[str]) -> int:
    """Apply the limits given on the command line and exec the command after ``--``."""
    parser = argparse.ArgumentParser(prog="launch")
    parser.add_argument("--memory", type=int, required=True, help="address-space limit in bytes")
    parser.add_argument("--processes", type=int, default=0, help="process limit (0: leave as is)")
    parser.add_argument("--file-size", type=int, required=True, help="largest file in bytes")
    parser.add_argument("--uid", type=int, default=None, help="switch to this uid and gid first")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    resource.setrlimit(resource.RLIMIT_AS, (args.memory, args.memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size, args.file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.uid is not None:
        os.setgroups([])
        os.setresgid(args.uid, args.uid, args.uid)
        os.setresuid(args.uid, args.uid, args.uid)
    # Set last: with the limit in force while switching uid, the kernel would fail the exec when
    # that uid already runs as many processes elsewhere.
    if args.processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (args.processes, args.processes))
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
