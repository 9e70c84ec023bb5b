"""The embedded default broker: amqtt (pure Python, MQTT 3.1.1) in its own thread and event loop.

For a newcomer's first run with nothing installed. It keeps sessions in memory only; production and the
benchmark use mosquitto (see README, deployment).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ingest.errors import ParkWatchError

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1884) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ParkWatchError(f"embedded broker did not start on {self.host}:{self.port} in {timeout}s")
        if self._error is not None:
            raise ParkWatchError(f"embedded broker cannot listen on {self.host}:{self.port}: {self._error}")

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(timeout=10)
        except Exception:
            log.debug("embedded broker shutdown was not clean", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - only the embedded default needs amqtt

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            self._broker = Broker(config, loop=loop)
            loop.run_until_complete(self._broker.start())
        except Exception as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()
