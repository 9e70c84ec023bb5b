"""What a source hands the pipeline (Message), and what a rejected one becomes (DeadLetter)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ingest.errors import Rejected

DEADLETTER_PAYLOAD_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the broker delivered it. `ack` is the source's token to acknowledge it later."""

    topic: str
    payload: bytes
    received_ns: int
    qos: int = 1
    retain: bool = False
    ack: object = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message with its reason, as it goes to `park/{park}/deadletter` and the local log."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_ns: int

    @classmethod
    def of(cls, message: Message, error: Rejected) -> DeadLetter:
        return cls(message.topic, message.payload, error.reason, error.detail, message.received_ns)

    def to_json(self) -> str:
        """Contract §1: topic, payload (text, or base64 with "encoding"), reason, received_at."""
        body = self.payload[:DEADLETTER_PAYLOAD_LIMIT]
        record: dict[str, object] = {"topic": self.topic}
        try:
            record["payload"] = body.decode("utf-8")
        except UnicodeDecodeError:
            record["payload"] = base64.b64encode(body).decode("ascii")
            record["encoding"] = "base64"
        if len(self.payload) > len(body):
            record["truncated"] = True
            record["size"] = len(self.payload)
        record["reason"] = f"{self.reason}: {self.detail}" if self.detail else self.reason
        record["code"] = self.reason
        record["received_at"] = datetime.fromtimestamp(self.received_ns / 1e9, UTC).isoformat()
        return json.dumps(record, ensure_ascii=False)
