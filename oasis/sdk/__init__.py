"""Python SDK for a node's local API (docs/api.md): :class:`AsyncClient` and :class:`Client`."""

from .client import AsyncClient, Client, OasisApiError, discover
from .types import (
    ChatMessage,
    Deleted,
    DmMessage,
    DmResult,
    Event,
    FileInfo,
    FileStatus,
    NodeInfo,
    PublishResult,
    StreamInfo,
    WatchResult,
)

__all__ = ["AsyncClient", "Client", "OasisApiError", "discover", "ChatMessage", "Deleted", "DmMessage", "DmResult",
           "Event", "FileInfo", "FileStatus", "NodeInfo", "PublishResult", "StreamInfo", "WatchResult"]
