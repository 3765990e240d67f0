"""Profile directories, configuration, connection files and the cluster registry."""

from .connection import (
    SCHEMA_VERSION,
    connect_host,
    new_key,
    read_connection_file,
    url_for,
    validate_connection_info,
    write_connection_file,
)
from .dirs import DEFAULT_PROFILE, ProfileDir, base_dir, list_profiles, validate_profile_name

__all__ = [
    "DEFAULT_PROFILE",
    "SCHEMA_VERSION",
    "ProfileDir",
    "base_dir",
    "connect_host",
    "list_profiles",
    "new_key",
    "read_connection_file",
    "url_for",
    "validate_connection_info",
    "validate_profile_name",
    "write_connection_file",
]
