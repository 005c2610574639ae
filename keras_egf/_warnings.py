"""Warnings that point at the user's line.

keras_egf warns with `warnings.warn`, never through the root logger (which
prints a library source line, and which an application's logging setup
changes or silences). `warn` attributes the warning to the first caller
outside keras_egf, however deep in the library it is raised, so that the
message names the line of the user's code that led to it.
"""

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message, category=UserWarning):
    """`warnings.warn(message, category)` with the stack level of the first
    frame outside the keras_egf package."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
