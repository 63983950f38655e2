"""ringbearer: carries outbound work to outside services, and keeps carrying it when they fail."""

from ._errors import ConfigError as ConfigError
from ._errors import ControlError as ControlError
from ._errors import InvalidPayload as InvalidPayload
from ._errors import RequestError as RequestError
from ._errors import RingbearerError as RingbearerError
from ._errors import StoreError as StoreError
from ._errors import StoreFullError as StoreFullError

__version__ = "0.1.0"
