"""Exit 0 when the installed llama.cpp was built as setup.sh asks, else print why and exit 1.

Usage: python scripts/check_llama_build.py --require "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.engine.build_info import check_build, llama_cpp_version  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--require", default="", help="compiler flags every ggml-cpu object must carry")
    args = parser.parse_args()
    problems = check_build(args.require.split())
    if problems:
        for problem in problems:
            print(f"llama.cpp build check: {problem}", file=sys.stderr)
        return 1
    print(f"llama.cpp build check: llama-cpp-python {llama_cpp_version()} OK"
          + (f" (every ggml-cpu object carries {args.require}; no AMX instructions)" if args.require else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
