"""The ``serial:`` key of a Modbus machine: which port, and the line settings every device on it shares.

Checked the way an electrician would get it wrong: a URL instead of a port, a baud rate with a zero
too many, ``parity: none`` or a YAML ``no``, 7 data bits (Modbus ASCII). Every error names the fix.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from edge_agent.core.config_base import StrictModel
from edge_agent.core.durations import Duration

Parity = Literal["N", "E", "O"]
BAUDRATES: tuple[int, ...] = (
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200,
    230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000,
    3500000, 4000000,
)  # fmt: skip
"""The rates a serial port can be set to (pyserial's list); anything else is a typo."""
_PARITY_WORDS: dict[str, str] = {"none": "N", "even": "E", "odd": "O", "n": "N", "e": "E", "o": "O"}


class SerialLine(StrictModel):
    """Where and how to talk Modbus RTU on a serial line (RS-485 / RS-232, usually a USB adapter).

    The defaults are 19200 baud, 8 data bits, no parity, 1 stop bit (pymodbus's, and what many
    devices ship with; the Modbus specification's default is even parity). Copy the settings from
    the device's display or manual: every device on the line must use the same ones.
    """

    device: str = Field(min_length=1, description="The serial port, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    baudrate: int = 19200
    parity: Parity = Field(default="N", description="N (none), E (even) or O (odd).")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[8] = Field(default=8, description="Data bits per character; Modbus RTU always sends 8.")
    inter_frame_delay: Duration | None = Field(
        default=None,
        description="Silence before each request; default 3.5 character times (1.75 ms above 19200 baud).",
    )

    @field_validator("device")
    @classmethod
    def _a_device_path(cls, value: str) -> str:
        if "://" in value:
            raise ValueError(
                f"device is the path of a serial port, not a URL (got {value!r}). Fix: write e.g. "
                "device: /dev/ttyUSB0; for a serial-to-Ethernet gateway use host and port with "
                "framing: rtu_over_tcp instead of serial"
            )
        if not value.startswith("/") and not value.upper().startswith("COM"):
            raise ValueError(
                f"device must be the full path of the serial port (got {value!r}). "
                f"Fix: write device: /dev/{value} (ls /dev/serial/by-id/ lists the adapters plugged in)"
            )
        return value

    @field_validator("baudrate", mode="before")
    @classmethod
    def _a_known_baudrate(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value not in BAUDRATES:
            typo = [rate for rate in (value // 10, value * 10) if rate in BAUDRATES]  # a zero too many or few
            closest = typo[0] if typo else min(BAUDRATES, key=lambda rate: abs(rate - value))
            common = "1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200"
            raise ValueError(
                f"baudrate {value} is not a rate a serial port can be set to. Fix: use the device's rate, "
                f"e.g. {closest} (common: {common})"
            )
        return value

    @field_validator("parity", mode="before")
    @classmethod
    def _a_parity_letter(cls, value: Any) -> Any:
        if value not in get_args(Parity):
            letter = _PARITY_WORDS.get(str(value).lower()) if isinstance(value, str) else None
            if value is False:  # YAML 1.1 turns a bare no / off into false
                letter = "N"
            hint = f"parity: {letter}" if letter else "parity: N, E or O"
            raise ValueError(f"parity is N (none), E (even) or O (odd) (got {value!r}). Fix: {hint}")
        return value

    @field_validator("stopbits", mode="before")
    @classmethod
    def _one_or_two_stopbits(cls, value: Any) -> Any:
        if value not in (1, 2) or isinstance(value, bool):
            raise ValueError(f"stopbits is 1 or 2 (got {value!r}). Fix: use the device's setting, usually 1")
        return value

    @field_validator("bytesize", mode="before")
    @classmethod
    def _eight_data_bits(cls, value: Any) -> Any:
        if value != 8 or isinstance(value, bool):
            raise ValueError(
                f"Modbus RTU sends 8 data bits per character (got bytesize {value!r}; 7 is for Modbus ASCII, "
                "which this connector does not speak). Fix: bytesize: 8, and set the device to RTU"
            )
        return value

    @field_validator("inter_frame_delay")
    @classmethod
    def _delay_not_negative(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError(
                f"inter_frame_delay must be between 0 and 1 s (got {value:g} s). Fix: remove it to use "
                "3.5 character times, or set e.g. inter_frame_delay: 5ms"
            )
        return value

    @property
    def character_bits(self) -> int:
        """Bits on the wire per character: start bit, data bits, parity bit (if any), stop bits."""
        return 1 + self.bytesize + (self.parity != "N") + self.stopbits

    @property
    def frame_gap(self) -> float:
        """Seconds of silence that separate two frames: configured, or what the RTU specification asks.

        3.5 character times mark the end of a frame; above 19200 baud the specification fixes it at
        1.75 ms. Without it a device may take the next request for the tail of the last answer.
        """
        if self.inter_frame_delay is not None:
            return self.inter_frame_delay
        if self.baudrate > 19200:
            return 0.00175
        return 3.5 * self.character_bits / self.baudrate

    @property
    def settings(self) -> str:
        """E.g. '19200 8N1': baudrate, data bits, parity, stop bits, as device manuals write them."""
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"

    def describe(self) -> str:
        """E.g. '/dev/ttyUSB0 (19200 8N1)'."""
        return f"{self.device} ({self.settings})"
