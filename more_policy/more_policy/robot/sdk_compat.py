"""Import-time workarounds for the PyPI ``unitree-sdk2`` 1.0.1 wheel, and the fast Go2 CRC.

The wheel (the official unitree_sdk2py) has two defects we work around without editing it:

1. ``unitree_sdk2py/__init__.py`` imports a ``b2`` subpackage the wheel does not ship: we
   register an empty module under that name before the first import.
2. ``unitree_sdk2py.utils.crc.CRC`` loads a native ``crc_amd64.so`` the wheel does not ship,
   and its pure-Python fallback costs ~1 ms per message (too slow for 500 Hz). :func:`go2_crc`
   computes the same CRC in C (``zlib``) after packing the message exactly as the SDK does.

A third: cyclonedds' generic Python (de)serializer costs ~0.5-0.8 ms per LowState_/LowCmd_,
half the 2 ms budget at 500 Hz. :func:`install_fast_codec` gives both classes a precompiled
``struct`` codec for their fixed XCDR1 little-endian layout (bit-exact with the generic one,
which stays the fallback for anything else).

A fourth, smaller one: ``ChannelFactoryInitialize(id, interface)`` writes a Cyclone trace file
to /tmp/cdds.LOG whenever an interface is named. :func:`init_channels` builds the same domain
with our own configuration (no tracing) and hands it to the SDK's factory.

Everything else in the project imports the SDK through :func:`sdk`, never directly.
"""

from __future__ import annotations

import importlib
import re
import struct
import sys
import threading
import types
import zlib
from typing import Any

import numpy as np

_lock = threading.Lock()
_channels_domain: int | None = None

# The Go2 CRC is CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no final
# xor) over the message packed as its C struct (little-endian, 4-byte aligned), fed as 32-bit
# words most-significant bit first, excluding the trailing crc word. zlib computes the
# reflected CRC-32 with the same polynomial, so we bit-reverse every input byte, run zlib and
# bit-reverse the (inverted) result.
_BIT_REVERSED_BYTE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))
LOWCMD_STRUCT = struct.Struct("<4B4IH2x" + "B3x5f3I" * 20 + "4B" + "55Bx2I")  # 812 bytes
LOWSTATE_STRUCT = struct.Struct(
    "<4B4IH2x" + "13fb3x" + "B3x7fb3x3I" * 20 + "4BiH4b15H" + "8hI41B3xf2b2x2f4h2I")  # 1180


def _stub_b2() -> None:
    if "unitree_sdk2py.b2" not in sys.modules:
        stub = types.ModuleType("unitree_sdk2py.b2")
        stub.__doc__ = "Empty stand-in: the PyPI unitree-sdk2 1.0.1 wheel lacks b2."
        stub.__path__ = []  # a package, so `from unitree_sdk2py.b2 import x` fails cleanly
        sys.modules["unitree_sdk2py.b2"] = stub


_stub_b2()  # importing this module is enough to make `import unitree_sdk2py` work


def sdk() -> types.ModuleType:
    """Import ``unitree_sdk2py`` (b2 stubbed, fast LowCmd_/LowState_ codec installed)."""
    with _lock:
        _stub_b2()
        try:
            module = importlib.import_module("unitree_sdk2py")
        except ImportError as e:
            raise ImportError(
                "unitree_sdk2py is not importable; install it with "
                "`pip install cyclonedds==11.0.1 && pip install --no-deps unitree-sdk2==1.0.1` "
                f"({e})") from e
    install_fast_codec()
    return module


def crc32_words(data: bytes) -> int:
    """CRC-32/MPEG-2 of ``data`` read as little-endian 32-bit words, MSB first (Go2 rule)."""
    if len(data) % 4:
        raise ValueError(f"CRC input must be whole 32-bit words, got {len(data)} bytes")
    big_endian = np.frombuffer(data, dtype="<u4").astype(">u4").tobytes()
    return crc32_mpeg2(big_endian)


def crc32_mpeg2(data: bytes) -> int:
    """Plain CRC-32/MPEG-2 of a byte string (check value of b'123456789' is 0x0376E6E7)."""
    reflected = (~zlib.crc32(data.translate(_BIT_REVERSED_BYTE))) & 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _lowcmd_values(cmd: Any) -> list:
    values = [*cmd.head, cmd.level_flag, cmd.frame_reserve, *cmd.sn, *cmd.version, cmd.bandwidth]
    for m in cmd.motor_cmd:
        values += (m.mode, m.q, m.dq, m.tau, m.kp, m.kd, *m.reserve)
    values += (cmd.bms_cmd.off, *cmd.bms_cmd.reserve, *cmd.wireless_remote, *cmd.led, *cmd.fan,
               cmd.gpio, cmd.reserve, cmd.crc)
    return values


def _lowstate_values(s: Any) -> list:
    imu, bms = s.imu_state, s.bms_state
    values = [*s.head, s.level_flag, s.frame_reserve, *s.sn, *s.version, s.bandwidth,
              *imu.quaternion, *imu.gyroscope, *imu.accelerometer, *imu.rpy, imu.temperature]
    for m in s.motor_state:
        values += (m.mode, m.q, m.dq, m.ddq, m.tau_est, m.q_raw, m.dq_raw, m.ddq_raw,
                   m.temperature, m.lost, *m.reserve)
    values += (bms.version_high, bms.version_low, bms.status, bms.soc, bms.current, bms.cycle,
               *bms.bq_ntc, *bms.mcu_ntc, *bms.cell_vol, *s.foot_force, *s.foot_force_est,
               s.tick, *s.wireless_remote, s.bit_flag, s.adc_reel, s.temperature_ntc1,
               s.temperature_ntc2, s.power_v, s.power_a, *s.fan_frequency, s.reserve, s.crc)
    return values


def _cdr_struct(c_format: str) -> struct.Struct:
    """The XCDR1 body layout of the same fields as a C-struct format: every primitive aligned
    to its own size from the start of the body, no trailing struct padding."""
    out, offset = ["<"], 0
    for count, code in re.findall(r"(\d*)([a-zA-Z])", c_format):
        if code == "x":  # C padding: CDR pads by its own rule below
            continue
        size = struct.calcsize(code)
        pad = -offset % size
        if pad:
            out.append(f"{pad}x")
        out.append(f"{count}{code}")
        offset += pad + size * int(count or 1)
    return struct.Struct("".join(out))


_CDR_LE_HEADER = b"\x00\x01\x00\x00"  # XCDR1, little endian
LOWCMD_CDR = _cdr_struct(LOWCMD_STRUCT.format)
LOWSTATE_CDR = _cdr_struct(LOWSTATE_STRUCT.format)


def _lowcmd_from_values(cls, v: tuple) -> Any:
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import BmsCmd_, MotorCmd_

    motors, k = [], 9
    for _ in range(20):
        motors.append(MotorCmd_(v[k], v[k + 1], v[k + 2], v[k + 3], v[k + 4], v[k + 5],
                                list(v[k + 6:k + 9])))
        k += 9
    # uint8 arrays come back as bytes, like cyclonedds' own deserializer gives them
    return cls(bytes(v[0:2]), v[2], v[3], list(v[4:6]), list(v[6:8]), v[8], motors,
               BmsCmd_(v[k], bytes(v[k + 1:k + 4])), bytes(v[k + 4:k + 44]),
               bytes(v[k + 44:k + 56]), bytes(v[k + 56:k + 58]), v[k + 58], v[k + 59],
               v[k + 60])


def _lowstate_from_values(cls, v: tuple) -> Any:
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import BmsState_, IMUState_, MotorState_

    imu = IMUState_(list(v[9:13]), list(v[13:16]), list(v[16:19]), list(v[19:22]), v[22])
    motors, k = [], 23
    for _ in range(20):
        motors.append(MotorState_(*v[k:k + 10], list(v[k + 10:k + 12])))
        k += 12
    bms = BmsState_(v[k], v[k + 1], v[k + 2], v[k + 3], v[k + 4], v[k + 5],
                    bytes(v[k + 6:k + 8]), bytes(v[k + 8:k + 10]), list(v[k + 10:k + 25]))
    k += 25
    return cls(bytes(v[0:2]), v[2], v[3], list(v[4:6]), list(v[6:8]), v[8], imu, motors, bms,
               list(v[k:k + 4]), list(v[k + 4:k + 8]), v[k + 8], bytes(v[k + 9:k + 49]),
               *v[k + 49:k + 55], list(v[k + 55:k + 59]), v[k + 59], v[k + 60])


def _install(cls, layout: struct.Struct, values, from_values) -> None:
    generic_serialize, generic_deserialize = cls.serialize, cls.deserialize.__func__

    def serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
        if buffer is None and endianness is None and not use_version_2:
            return _CDR_LE_HEADER + layout.pack(*values(self))
        return generic_serialize(self, buffer, endianness, use_version_2)

    def deserialize(klass, data, has_header=True, use_version_2=None):
        if has_header and use_version_2 is None and bytes(data[:4]) == _CDR_LE_HEADER and \
                len(data) >= 4 + layout.size:
            return from_values(klass, layout.unpack_from(data, 4))
        return generic_deserialize(klass, data, has_header, use_version_2)

    serialize.generic = generic_serialize
    deserialize.generic = generic_deserialize
    cls.serialize, cls.deserialize = serialize, classmethod(deserialize)


def install_fast_codec() -> None:
    """Give unitree_go LowCmd_ / LowState_ the precompiled codec (idempotent)."""
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_

    if getattr(LowCmd_.serialize, "generic", None) is None:
        _install(LowCmd_, LOWCMD_CDR, _lowcmd_values, _lowcmd_from_values)
        _install(LowState_, LOWSTATE_CDR, _lowstate_values, _lowstate_from_values)


def pack_message(msg: Any) -> bytes:
    """A unitree_go LowCmd_/LowState_ packed as the robot's C struct (what the CRC covers)."""
    typename = getattr(msg, "__idl_typename__", type(msg).__name__)
    if typename == "unitree_go.msg.dds_.LowCmd_":
        return LOWCMD_STRUCT.pack(*_lowcmd_values(msg))
    if typename == "unitree_go.msg.dds_.LowState_":
        return LOWSTATE_STRUCT.pack(*_lowstate_values(msg))
    raise TypeError(f"go2_crc: expected unitree_go LowCmd_ or LowState_, got {typename}")


def go2_crc(msg: Any) -> int:
    """The CRC the Go2 expects in ``msg.crc`` (the last word is excluded, as on the robot)."""
    return crc32_words(pack_message(msg)[:-4])


_CHANNEL_CONFIG = """<?xml version="1.0" encoding="UTF-8" ?>
<CycloneDDS><Domain Id="any"><General><Interfaces>{interface}</Interfaces></General></Domain>
</CycloneDDS>"""


def init_channels(domain_id: int = 0, interface: str | None = None) -> None:
    """Initialise the SDK's process-wide channel factory on ``domain_id`` (once per process).

    ``interface``: the network interface facing the robot (e.g. ``enp3s0``), ``lo`` for
    loopback tests, None to let Cyclone choose. A second call with another domain raises,
    because the SDK keeps a single participant per process.
    """
    global _channels_domain
    sdk()
    from cyclonedds.domain import Domain, DomainParticipant
    from unitree_sdk2py.core.channel import ChannelFactory

    with _lock:
        if _channels_domain is not None:
            if _channels_domain != domain_id:
                raise RuntimeError(f"DDS channels already use domain {_channels_domain}; the "
                                   f"SDK allows one domain per process (asked {domain_id})")
            return
        if not 0 <= domain_id <= 232:
            raise ValueError(f"DDS domain id must be in [0, 232], got {domain_id}")
        iface = ('<NetworkInterface autodetermine="true"/>' if interface is None
                 else f'<NetworkInterface name="{interface}"/>')
        # The SDK's Init would add tracing; set up the same domain + participant ourselves.
        ChannelFactory._ChannelFactory__domain = Domain(
            domain_id, _CHANNEL_CONFIG.format(interface=iface))
        ChannelFactory._ChannelFactory__participant = DomainParticipant(domain_id)
        ChannelFactory._ChannelFactory__qos = None
        ChannelFactory._ChannelFactory__initialized = True
        _channels_domain = domain_id


def channels_domain() -> int | None:
    """The DDS domain the SDK channels use in this process (None before init_channels)."""
    return _channels_domain
