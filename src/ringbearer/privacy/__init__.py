"""Personal data: sealed per data subject, erasable by destroying the subject's key."""

from ._kek import KekError as KekError
from ._kek import generate_key_file as generate_key_file
from ._kek import load_kek as load_kek
from ._key_follow import DestroyLog as DestroyLog
from ._key_follow import DestroyLogPruned as DestroyLogPruned
from ._key_follow import KeyFollower as KeyFollower
from ._keystore import KeyRow as KeyRow
from ._keystore import KeyStore as KeyStore
from ._keystore import KeyStoreError as KeyStoreError
from ._keystore import MemoryKeyStore as MemoryKeyStore
from ._keystore import SqliteKeyStore as SqliteKeyStore
from ._seal import Kek as Kek
from ._seal import Unsealable as Unsealable
from ._seal import new_data_key as new_data_key
from ._seal import open_sealed as open_sealed
from ._seal import rewrap as rewrap
from ._seal import seal as seal
from ._vault import Erased as Erased
from ._vault import RotationState as RotationState
from ._vault import Vault as Vault
from ._vault import VaultStatistics as VaultStatistics
from ._vault import normalise_identity as normalise_identity
