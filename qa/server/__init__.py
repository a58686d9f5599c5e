"""`qa serve`: a REST API and a web page over one index, a thin layer over :class:`qa.Pipeline`."""

from qa.server.app import ServerSettings, create_app
from qa.server.service import Service, ServiceOptions

__all__ = ["ServerSettings", "Service", "ServiceOptions", "create_app"]
