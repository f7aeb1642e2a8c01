"""The one error type: what went wrong and how to fix it, printed once by the
CLI as `minihpc: error: what; fix`, with exit code 2 for bad input and 1 for
everything else."""

from __future__ import annotations

BAD_INPUT, FAILED = 2, 1


class MinihpcError(Exception):
    def __init__(self, what: str, fix: str = "", code: int = FAILED) -> None:
        super().__init__(f"{what}; {fix}" if fix else what)
        self.what, self.fix, self.code = what, fix, code


class BadInput(MinihpcError):
    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what, fix, BAD_INPUT)
