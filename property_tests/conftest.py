"""Hypothesis profiles: "dev" (default, fast) and "ci" (thorough), chosen by HYPOTHESIS_PROFILE.

No health check is suppressed globally: the few tests that need one suppressed say
so next to their own @settings, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import warnings

from hypothesis import settings

# When a test fails, Hypothesis imports libcst (to print a patch with the failing
# example), and that import warns DeprecationWarning from mypy_extensions. With the
# project's filterwarnings=error, the warning escapes pytest's report hook and the whole
# session dies with INTERNALERROR instead of showing the failure. Import it here once,
# with that warning ignored, so the later import is a no-op.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import libcst.metadata  # noqa: F401

# deadline=None everywhere: the execution properties run a real threaded worker, whose
# timing depends on thread scheduling on a loaded CI box, not on the code under test.
settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
