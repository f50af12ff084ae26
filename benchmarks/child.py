"""Entry point of a benchmark child process: ``python -m benchmarks.child module:function params.json out.json``.

The function gets the parameters and returns a JSON-able dict; the child adds its own peak RSS.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys


def main() -> None:
    target, params_path, result_path = sys.argv[1:4]
    module_name, function_name = target.split(":")
    with open(params_path, encoding="utf-8") as handle:
        params = json.load(handle)
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(params)
    result.setdefault("child_max_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
