"""Site sessions: the nonce, post id and cookies one handshake yields, reused by many POSTs."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class SiteSession:
    """A plain value the caller may cache; its lifetime is the policy's business."""

    nonce: str
    post_id: str
    cookies: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    uses: int = 0

    def used(self) -> SiteSession:
        return replace(self, uses=self.uses + 1)

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.created_at

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> SiteSession:
        data = json.loads(raw)
        return cls(
            nonce=str(data["nonce"]),
            post_id=str(data["post_id"]),
            cookies={str(k): str(v) for k, v in data.get("cookies", {}).items()},
            created_at=float(data["created_at"]),
            uses=int(data.get("uses", 0)),
        )
