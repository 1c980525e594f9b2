"""Type stubs of the native engine (python/src/). Views are JSON text; see logbook._views."""

from os import PathLike
from typing import Callable, List, Optional, Union

__version__: str

class LogbookError(Exception):
    code: Optional[str]
    reason: str

class RefusedError(LogbookError): ...

class Engine:
    @property
    def path(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def next_offset(self) -> int: ...
    def record(self, event: str) -> int: ...
    def progress(
        self,
        upgrade_id: str,
        task_id: str,
        percentage: float,
        message: Optional[str] = None,
        details: Optional[str] = None,
    ) -> int: ...
    def upgrade(self, upgrade_id: str) -> Optional[str]: ...
    def upgrade_ids(self) -> List[str]: ...
    def add_artifact(
        self,
        session_id: str,
        collection_id: str,
        artifact_id: str,
        path: Union[str, PathLike[str]],
        artifact_type: str,
        tags: List[str],
        task_id: Optional[str] = None,
        description: Optional[str] = None,
        file_name: Optional[str] = None,
    ) -> str: ...
    def artifact(self, artifact_id: str) -> Optional[str]: ...
    def artifact_path(self, artifact_id: str) -> Optional[str]: ...
    def search(
        self,
        session_id: Optional[str] = None,
        artifact_type: Optional[str] = None,
        tags: Optional[List[str]] = None,
        any_tag: bool = False,
        task_id: Optional[str] = None,
        status: Optional[str] = None,
        min_size: Optional[int] = None,
        max_size: Optional[int] = None,
        since_us: Optional[int] = None,
        until_us: Optional[int] = None,
        name: Optional[str] = None,
        text: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> str: ...
    def statistics(self) -> str: ...
    def apply_retention(self) -> List[str]: ...
    def upload_artifact(self, artifact_id: str) -> str: ...
    def presigned_url(self, artifact_id: str, expires_in: float) -> str: ...
    def on_record(self, name: str, callback: Callable[[str], object], from_offset: Optional[int] = None) -> None: ...
    def start_server(self, host: str, port: int, token: Optional[str] = None) -> int: ...
    def stop_server(self) -> None: ...
    def server_port(self) -> Optional[int]: ...
    def close(self) -> None: ...

def open(
    path: Union[str, PathLike[str]],
    durability: str = "sync",
    s3: Optional[str] = None,
    auto_upload: bool = False,
    eventbridge_bus: Optional[str] = None,
    aws_region: Optional[str] = None,
    retention_days: Optional[float] = None,
) -> Engine: ...
