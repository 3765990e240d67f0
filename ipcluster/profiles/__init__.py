"""Profile directories, configuration, connection files and the cluster registry."""

from .config import SECTIONS, Config, load_config
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
from .manage import create_profile, open_profile, profile_config
from .registry import ClusterRecord, list_records, read_record, remove_record, write_record
from .templates import TEMPLATES, render_config

__all__ = [
    "ClusterRecord",
    "Config",
    "DEFAULT_PROFILE",
    "SECTIONS",
    "TEMPLATES",
    "create_profile",
    "list_records",
    "load_config",
    "open_profile",
    "profile_config",
    "read_record",
    "remove_record",
    "render_config",
    "write_record",
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
