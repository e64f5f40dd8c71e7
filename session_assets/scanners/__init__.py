"""Scanners: validated definitions, filter-to-SQL compilation and verdict kinds (SPEC §7).

```python
from session_assets.scanners import load_scanners, compile_filter
scanners = load_scanners("scanners.yaml")          # ScannerError names file, scanner, path, value
compiled = compile_filter(scanners[0].filter)      # .sql (boolean expression), .params (bound values)
verdict = scanners[0].apply(summary)               # via the scanner's kind
```
"""

from session_assets.scanners._types import COUNTER_COLUMNS
from session_assets.scanners.errors import ScannerError
from session_assets.scanners.filters import CompiledFilter, compile_filter
from session_assets.scanners.kinds import (
    KINDS,
    ScannerKind,
    SessionSummary,
    Verdict,
    get_kind,
    register_kind,
)
from session_assets.scanners.model import (
    Scanner,
    ScannerFilter,
    load_scanners,
    parse_scanner,
)

__all__ = [
    "COUNTER_COLUMNS",
    "KINDS",
    "CompiledFilter",
    "Scanner",
    "ScannerError",
    "ScannerFilter",
    "ScannerKind",
    "SessionSummary",
    "Verdict",
    "compile_filter",
    "get_kind",
    "load_scanners",
    "parse_scanner",
    "register_kind",
]
