#!/usr/bin/env python3
"""Command-line entry point of run_vm.py (import run_vm from Python)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_vm  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_vm.main())
