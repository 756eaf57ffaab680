"""Why a serial port would not open, in words an operator can act on.

pymodbus reports a port that fails to open only as "not connected" (it logs the reason and returns
False). The agent then opens the port once more itself, with pyserial and the same settings, to
learn the cause: the device file is missing (adapter unplugged, wrong path), the agent's user may
not open it (not in the ``dialout`` group), or another program holds it. Blocking: run it in a
thread.
"""

from __future__ import annotations

import errno
import os
import stat

import serial

from connectors.modbus.serial_line import SerialLine


def _setting_errors() -> tuple[type[Exception], ...]:
    try:
        import termios  # POSIX only
    except ImportError:  # Windows: pyserial raises ValueError or SerialException there
        return (ValueError,)
    return (ValueError, termios.error)


SETTING_ERRORS: tuple[type[Exception], ...] = _setting_errors()
"""What pyserial lets through when the port refuses a setting (a pty refuses parity, for one)."""

_GROUP_FIX = (
    "Fix: add the agent's user to the group that owns the port (on Debian and Raspberry Pi OS: "
    "sudo usermod -aG dialout USER, then log in again or restart the service), or give the port to that "
    "user with a udev rule"
)


def diagnose_open_failure(line: SerialLine) -> str:
    """One sentence with the cause and the fix for a serial port that did not open."""
    problem = _file_problem(line.device)
    if problem is not None:
        return problem
    try:
        port = serial.Serial(
            line.device,
            baudrate=line.baudrate,
            bytesize=line.bytesize,
            parity=line.parity,
            stopbits=line.stopbits,
            exclusive=True,
            timeout=0,
        )
    except serial.SerialException as exc:
        return _explain(line.device, exc)
    except SETTING_ERRORS as exc:
        return settings_refused(line, exc)
    port.close()
    return f"the serial port {line.device} opens now; it did not a moment ago. The agent retries"


def settings_refused(line: SerialLine, exc: BaseException) -> str:
    """The port opened but its driver refused baudrate, parity, stop bits or data bits."""
    return (
        f"the serial port {line.device} refused the settings {line.settings} ({exc}). Fix: check "
        "serial.baudrate, parity and stopbits against what the adapter supports (a virtual pty pair, "
        "e.g. from socat, takes no parity: use parity: N)"
    )


def _file_problem(path: str) -> str | None:
    """What is wrong with the device file itself, if anything."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return (
            f"the serial port {path} does not exist. Fix: check serial.device and that the adapter is plugged in "
            "(ls /dev/serial/by-id/ lists the adapters this computer sees; /dev/ttyUSB0 and /dev/ttyACM0 are "
            "the usual names)"
        )
    except OSError as exc:
        return f"the serial port {path} cannot be examined ({exc.strerror}). Fix: check serial.device"
    if not stat.S_ISCHR(info.st_mode):
        return (
            f"{path} is not a serial port (not a character device). Fix: point serial.device at the port, "
            "e.g. /dev/ttyUSB0 or a name under /dev/serial/by-id/"
        )
    if not os.access(path, os.R_OK | os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return f"the agent's user may not read and write the serial port {path}. {_GROUP_FIX}"
    return None


def _explain(path: str, exc: serial.SerialException) -> str:
    code = exc.errno if isinstance(exc.errno, int) else None
    if code in (errno.EACCES, errno.EPERM):
        return f"the agent's user may not open the serial port {path}. {_GROUP_FIX}"
    if code == errno.EBUSY or "lock" in str(exc).lower():
        return (
            f"the serial port {path} is in use by another program (or another machine of this config; one port "
            "serves one machine section). Fix: stop the other program (fuser -v PORT names it), or read every "
            "device on this line from one machine section, with unit_id per tag"
        )
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return f"the serial port {path} has no device behind it (unplugged?). Fix: plug the adapter in again"
    return f"the serial port {path} does not open: {exc}. Fix: check serial.device and the adapter"
