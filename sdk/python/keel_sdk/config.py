"""The tenant's configuration of this plugin, and its secrets."""

import json
from typing import Any, Optional

from wit_world.imports import config as _wit

from .errors import host


def get() -> Any:
    """The configuration the tenant enabled the plugin with (valid against
    the manifest's `config_schema`)."""
    return json.loads(_wit.get())


def secret(name: str) -> Optional[str]:
    """A secret the tenant stored for this plugin (needs `secrets`)."""
    return host(_wit.secret, name)


def time_zone() -> str:
    """The tenant's IANA time zone, e.g. ``Asia/Shanghai``."""
    return _wit.time_zone()


def consumer_sign_in() -> Optional[str]:
    """The identifier kind consumers sign in with (``wechat_openid``), or
    None when every public call is anonymous."""
    return host(_wit.consumer_sign_in)
