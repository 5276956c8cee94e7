"""Field encryption, blind indexes, crypto-shredding and master-key rotation (DESIGN.md).

Build one Crypto per process: ``Crypto(make_engine(settings.resolved_keystore_url()),
master_key_provider(settings))``; the master keys are local
(CDP_MASTER_KEY, CDP_MASTER_KEY_FILE) or in Vault's transit engine (CDP_KMS_PROVIDER=vault).
"""

from cdp.crypto.blind_index import IDENTIFIER_KINDS
from cdp.crypto.envelope import Crypto, SubjectKeys
from cdp.crypto.keystore import keystore_drift, keystore_is_current, upgrade_keystore
from cdp.crypto.masterkey import (
    BatchMasterKeyProvider,
    LocalMasterKeys,
    MasterKeyConfigError,
    MasterKeyProvider,
    master_key_provider,
)
from cdp.crypto.rotation import KeyStatus, RotationReport
from cdp.crypto.vault import KmsUnavailable, VaultTransitKeys

__all__ = [
    "IDENTIFIER_KINDS",
    "BatchMasterKeyProvider",
    "Crypto",
    "KeyStatus",
    "KmsUnavailable",
    "LocalMasterKeys",
    "MasterKeyConfigError",
    "MasterKeyProvider",
    "RotationReport",
    "SubjectKeys",
    "VaultTransitKeys",
    "keystore_drift",
    "keystore_is_current",
    "master_key_provider",
    "upgrade_keystore",
]
