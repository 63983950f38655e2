"""Personal data: sealed per data subject, erasable by destroying the subject's key."""

from ._seal import Kek as Kek
from ._seal import Unsealable as Unsealable
from ._seal import new_data_key as new_data_key
from ._seal import open_sealed as open_sealed
from ._seal import rewrap as rewrap
from ._seal import seal as seal
