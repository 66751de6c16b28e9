# SPDX-License-Identifier: Apache-2.0
"""errors.py - the exceptions of the package, one per class of Proteus's
status (engine/base/pq_err.h). Each carries the library's one-line message,
the status (its number and name) and the exit status `proteus` gives it."""


class ProteusError(Exception):
    """Any failure Proteus reports. message: the library's line naming the
    thing and the cause; status: the pq_status number; status_name: its
    class ("config error", ...); exit_code: the `proteus` exit status."""

    def __init__(self, message, status=None, status_name=None, exit_code=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.status_name = status_name
        self.exit_code = exit_code

    def __str__(self):
        return "%s: %s" % (self.status_name, self.message) if self.status_name else self.message


class ConfigurationError(ProteusError, ValueError):
    """A bad option, configuration key or value (status 1, exit 2)."""


class QuantizationError(ProteusError):
    """Weights that cannot be quantized under the policy (status 4, exit 5)."""


class AccuracyError(QuantizationError):
    """Accuracy lost beyond the allowed drop (status 12, exit 13)."""


class CalibrationError(ProteusError):
    """Calibration data or statistics unusable (status 5, exit 6)."""


class HardwareCompatibilityError(ProteusError):
    """A hardware target this build or machine cannot serve (status 6 or 11,
    exit 7 or 12)."""


_BY_STATUS = {1: ConfigurationError, 4: QuantizationError, 5: CalibrationError, 6: HardwareCompatibilityError,
              11: HardwareCompatibilityError, 12: AccuracyError}

# exit statuses of `proteus` (pq_status_exit_code) to the same classes
_BY_EXIT = {2: ConfigurationError, 5: QuantizationError, 6: CalibrationError, 7: HardwareCompatibilityError,
            12: HardwareCompatibilityError, 13: AccuracyError}


def error_for(status, message, status_name=None, exit_code=None):
    """The exception for a failed pq_status."""
    return _BY_STATUS.get(status, ProteusError)(message, status, status_name, exit_code)


def error_for_exit(exit_code, message):
    """The exception for a `proteus` process that exited with exit_code."""
    return _BY_EXIT.get(exit_code, ProteusError)(message, None, None, exit_code)
