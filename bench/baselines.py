"""The references errord is measured against, over the same file (issue 5).

    .venv/bin/python bench/baselines.py naive FILE       # prints one JSON object
    .venv/bin/python bench/baselines.py prefilter FILE

* ``naive``: the loop anyone writes first: ``for line in file: orjson.loads(line)``, then
  a dict of open codes (alert on new, drop on clear). Timed from ``open`` to the end,
  in its own process, interpreter start-up excluded. Nothing durable, no notices.
* ``prefilter``: the same loop, but ``orjson.loads`` only on lines whose bytes contain
  ``"error_code``.
* SEC (Simple Event Correlator, Debian package ``sec``): :func:`sec_rules` writes a
  rules file with one ``SingleWithSuppress`` rule whose operation is keyed by the code
  (``desc=error $1``: a separate suppression window per code, the idiomatic SEC way;
  one regex per line instead of 50 keeps SEC at its fastest) and a ``Single`` clear rule
  that resets the code's operation. :func:`sec_command` runs it over the file with
  ``--notail`` (read to EOF, then exit); the run is timed as a whole process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

__all__ = ["naive", "prefilter", "sec_command", "sec_rules"]


def naive(path: str) -> dict[str, float]:
    import orjson

    t0, c0 = time.perf_counter(), time.process_time()
    open_codes: dict[str, int] = {}
    lines = alerts = 0
    loads = orjson.loads
    with open(path, "rb") as f:
        for line in f:
            lines += 1
            try:
                obj = loads(line)
            except orjson.JSONDecodeError:
                continue
            if type(obj) is not dict:
                continue
            clear = obj.get("error_code_clear")
            if clear is not None and open_codes.pop(clear, None) is not None:
                alerts += 1
            code = obj.get("error_code")
            if code is not None:
                if code in open_codes:
                    open_codes[code] += 1
                else:
                    open_codes[code] = 1
                    alerts += 1
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "lines": lines, "alerts": alerts}


def prefilter(path: str) -> dict[str, float]:
    import orjson

    t0, c0 = time.perf_counter(), time.process_time()
    open_codes: dict[str, int] = {}
    lines = alerts = 0
    loads = orjson.loads
    needle = b'"error_code'
    with open(path, "rb") as f:
        for line in f:
            lines += 1
            if needle not in line:
                continue
            try:
                obj = loads(line)
            except orjson.JSONDecodeError:
                continue
            if type(obj) is not dict:
                continue
            clear = obj.get("error_code_clear")
            if clear is not None and open_codes.pop(clear, None) is not None:
                alerts += 1
            code = obj.get("error_code")
            if code is not None:
                if code in open_codes:
                    open_codes[code] += 1
                else:
                    open_codes[code] = 1
                    alerts += 1
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "lines": lines, "alerts": alerts}


SEC_RULES = """\
# errord benchmark: the classic correlator doing errord's job.
# A line with both keys is the clear first, then the error (continue=TakeNext).
type=Single
ptype=RegExp
pattern="error_code_clear": "([^"]+)"
desc=clear $1
action=reset +1 error $1; write - resolved $1
continue=TakeNext

# alert once per code, suppress repeats for the re-alert interval (1 h)
type=SingleWithSuppress
ptype=RegExp
pattern="error_code": "([^"]+)"
desc=error $1
action=write - failing $1
window=3600
"""


def sec_rules(path: Path) -> Path:
    path.write_text(SEC_RULES)
    return path


def sec_command(rules: Path, log: Path) -> list[str]:
    return ["sec", f"--conf={rules}", f"--input={log}", "--notail", "--nointevents"]


def main() -> None:
    kind, path = sys.argv[1], sys.argv[2]
    fn = {"naive": naive, "prefilter": prefilter}[kind]
    print(json.dumps(fn(path)))


if __name__ == "__main__":
    main()
