"""`edge-agent discover modbus://…` draws a bar on a terminal only; the table on stdout is the same.

A register dump of a whole device takes a while (one request per 125 registers, and a slow
device answers in tens of milliseconds), so an operator at a terminal gets a bar with the count;
in a pipe, the journal or with ``EDGE_AGENT_NO_PROGRESS`` stderr stays free of it.
"""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys

from simulators import Simulation


def run_discover(url: str, *args: str, on_terminal: bool, quiet: bool = False) -> tuple[int, str, str]:
    """Run the real CLI; return exit code, stdout, and stderr (read through a pty when ``on_terminal``)."""
    argv = [sys.executable, "-m", "edge_agent", "discover", url, *args]
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM", "EDGE_AGENT_LOG_FORMAT")}
    env.pop("EDGE_AGENT_NO_PROGRESS", None)
    if quiet:
        env["EDGE_AGENT_NO_PROGRESS"] = "1"
    if not on_terminal:
        done = subprocess.run(argv, capture_output=True, env=env, timeout=120, check=False)
        return done.returncode, done.stdout.decode(), done.stderr.decode(errors="replace")
    master, slave = pty.openpty()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env) as proc:
        os.close(slave)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=120)
    os.close(master)
    return code, out, b"".join(chunks).decode(errors="replace")


async def test_a_register_dump_shows_a_bar_on_a_terminal_and_nothing_in_a_pipe() -> None:
    async with Simulation(seed=5, opcua_port=None, modbus_port=0) as sim:
        async with asyncio.timeout(5):
            await sim.wait_updates(1)
        url = f"modbus://127.0.0.1:{sim.modbus.port}"
        args = ("--unit", str(sim.modbus.unit_id("press-1")), "--range", "0-299")
        shown, piped, quiet = await asyncio.gather(
            asyncio.to_thread(run_discover, url, *args, on_terminal=True),
            asyncio.to_thread(run_discover, url, *args, on_terminal=False),
            asyncio.to_thread(run_discover, url, *args, on_terminal=True, quiet=True),
        )
        assert sim.write_count == 0
    code, out, err = shown
    assert code == 0, err
    assert "reading 127.0.0.1" in err, err
    # The bar with its total: one past the range, for the float pair of the last address. (How far it
    # got before it was cleared depends on speed; a fast dump may only show its first frame.)
    assert "/301 [" in err, err
    assert "reg" in err
    piped_code, piped_out, piped_err = piped
    assert piped_code == 0, piped_err
    assert "reading" not in piped_err, piped_err
    assert "\r" not in piped_err, piped_err
    quiet_code, _quiet_out, quiet_err = quiet
    assert quiet_code == 0, quiet_err
    assert "reading" not in quiet_err, quiet_err
    # The same table either way (values move between the runs, so compare the address column).
    assert [line.split()[:1] for line in out.splitlines()] == [line.split()[:1] for line in piped_out.splitlines()]
