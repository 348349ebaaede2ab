"""FLK Python SDK: sign PCS records, pre-check them, submit them, and build them from data.

Modules are small and single-purpose:

- :mod:`flk_sdk.canonical` - round9, float printing, canonical payload, ``pcs_id``;
- :mod:`flk_sdk.signing` - HMAC-SHA256 / Ed25519 / legacy pre-hash signatures;
- :mod:`flk_sdk.pcs` - the PCS dataclass and the strict decoder;
- :mod:`flk_sdk.verify` - the server's verification as a pure function;
- :mod:`flk_sdk.client` - the HTTP gateway client with retries;
- :mod:`flk_sdk.kafka` - direct Kafka producer helper (extra ``[kafka]``);
- :mod:`flk_sdk.agent`, :mod:`flk_sdk.signals`, :mod:`flk_sdk.merkle`, :mod:`flk_sdk.rng` - the agent
  side that turns event data into a PCS;
- :mod:`flk_sdk.outbox` - a durable, crash-safe outbox of records to send.
- :mod:`flk_sdk.audit` - offline checks of the audit log's proofs and signed checkpoints.
"""

from .agent import build_pcs, build_pcs_from_data, load_csv
from .canonical import canonical_payload, compute_pcs_id, format_float, round9, signed_fields
from .client import (
    Accepted,
    BadRequest,
    Client,
    Conflict,
    DuplicateReplay,
    Escalated,
    FlkError,
    Forbidden,
    PayloadTooLarge,
    RetriesExhausted,
    Unauthorized,
    UnexpectedResponse,
)
from .pcs import FT, PCS, MalformedPCS, decode_pcs
from .signing import (
    ed25519_public_key,
    sign_ed25519,
    sign_hmac,
    sign_hmac_prehash,
    verify_ed25519,
    verify_hmac,
    verify_hmac_prehash,
)
from .verify import Outcome, VerifyParams, verify

__version__ = "0.1.0"

__all__ = [
    "FT",
    "PCS",
    "Accepted",
    "BadRequest",
    "Client",
    "Conflict",
    "DuplicateReplay",
    "Escalated",
    "FlkError",
    "Forbidden",
    "MalformedPCS",
    "Outcome",
    "PayloadTooLarge",
    "RetriesExhausted",
    "Unauthorized",
    "UnexpectedResponse",
    "VerifyParams",
    "build_pcs",
    "build_pcs_from_data",
    "load_csv",
    "canonical_payload",
    "compute_pcs_id",
    "decode_pcs",
    "ed25519_public_key",
    "format_float",
    "round9",
    "sign_ed25519",
    "sign_hmac",
    "sign_hmac_prehash",
    "signed_fields",
    "verify",
    "verify_ed25519",
    "verify_hmac",
    "verify_hmac_prehash",
]
