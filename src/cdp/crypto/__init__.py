"""Field encryption, blind indexes, crypto-shredding and master-key rotation (DESIGN.md).

Build one Crypto per process: ``Crypto(make_engine(settings.resolved_keystore_url()),
master_key_provider(settings))``.
"""

from cdp.crypto.blind_index import IDENTIFIER_KINDS
from cdp.crypto.envelope import Crypto, SubjectKeys
from cdp.crypto.keystore import keystore_drift, keystore_is_current, upgrade_keystore
from cdp.crypto.masterkey import (
    LocalMasterKeys,
    MasterKeyConfigError,
    MasterKeyProvider,
    master_key_provider,
)
from cdp.crypto.rotation import KeyStatus, RotationReport

__all__ = [
    "IDENTIFIER_KINDS",
    "Crypto",
    "KeyStatus",
    "LocalMasterKeys",
    "MasterKeyConfigError",
    "MasterKeyProvider",
    "RotationReport",
    "SubjectKeys",
    "keystore_drift",
    "keystore_is_current",
    "master_key_provider",
    "upgrade_keystore",
]
