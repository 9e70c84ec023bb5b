"""A cheaper MQTT 5 Properties object for paho-mqtt's packet decoder (`install`).

paho 2.x decodes every MQTT 5 PUBLISH into a ``Properties`` object, and that object is expensive: its
constructor builds three lookup tables (28 names, 28 property definitions with ``types.index`` calls) per
instance, and ``unpack`` first ``clear``s it by walking all 28 names with ``str.replace`` and ``hasattr``.
On the benchmark machine that was 18 µs of the 18.4 µs ``decode_publish`` took per message, a quarter of
the network thread's time (py-spy, ``bench/results/profile-json-gil.txt``).

`LeanProperties` is paho's class with those tables built once and shared (paho only reads them), a
``clear`` that removes only what was set, and an ``unpack`` that returns at once for the common PUBLISH
with no properties (a property length of 0). A packet with properties is decoded by paho's own code, so
what the rest of paho (and we) see is the same object with the same attributes. `install` points the
decoder module at it; the MqttSource does so when it builds its client.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

_TABLES = Properties(PacketTypes.PUBLISH)  # paho's tables, built once
_NAMES: dict[str, int] = _TABLES.names
_ATTRIBUTES = frozenset(name.replace(" ", "") for name in _NAMES)
_lock = threading.Lock()


class LeanProperties(Properties):
    """paho's Properties with its lookup tables shared between instances (see the module docstring)."""

    def __init__(self, packetType: int) -> None:  # noqa: N803 (paho's name)
        own = self.__dict__
        own["packetType"] = packetType
        own["types"] = _TABLES.types
        own["names"] = _NAMES
        own["properties"] = _TABLES.properties

    def clear(self) -> None:
        own = self.__dict__
        for name in [n for n in own if n in _ATTRIBUTES]:
            del own[name]

    def unpack(self, buffer: Any) -> tuple[Properties, int]:
        if buffer[:1] == b"\x00":  # a property length of 0: no properties, one byte read
            self.clear()
            return self, 1
        result: tuple[Properties, int] = super().unpack(buffer)
        return result


def install() -> bool:
    """Make paho's packet decoder build LeanProperties; True if it does (now or already).

    A paho whose decoder no longer has a module-level ``Properties`` is left alone (logged once).
    """
    with _lock:
        current = getattr(_packet, "Properties", None)
        if current is LeanProperties:
            return True
        if current is not Properties:
            log.info("paho-mqtt's decoder has changed; its own Properties are kept (slower per message)")
            return False
        _packet.Properties = LeanProperties  # type: ignore[misc]
        return True
