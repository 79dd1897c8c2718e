"""The ``sources.physionet`` settings and PhysioNet's file layout, as ``pull`` uses them.

PhysioNet serves every file of a published project version at
``<base_url>/<project>/<version>/<path>`` (``base_url`` = ``https://physionet.org/files/``) and
publishes the version's ``SHA256SUMS.txt`` next to it. The files the build needs:

* MIMIC-CXR (``mimic-cxr``, 2.0.0): ``mimic-cxr-reports.zip``;
* MIMIC-CXR-JPG (``mimic-cxr-jpg``, 2.0.0 or 2.1.0): ``mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz``
  (2.1.0 kept these names) and, on request, ``files/pNN/pSUBJECT/sSTUDY/<dicom_id>.jpg``.

Credentialed files are served with HTTP basic authentication over https (what
``wget --user --ask-password`` does). PhysioNet accepts basic authentication only from
non-browser user agents it recognises by a ``Wget/`` or ``libwfdb/`` prefix (physionet-build,
``project/utility.py``, ``HTTP_AUTH_USER_AGENT``); any other agent gets 403 even with a valid login.
So the client (:mod:`.physionet_http`) announces itself as ``Wget/1.21 (compatible; radialog-instruct/<version>)``: wget's
protocol subset (GET, Range, basic auth), plus our name so the server can tell us apart.

Status codes (same source, ``check_http_auth`` / ``require_http_auth``): 401 = the user name and
password were not accepted (or none were sent); 403 = the login worked but the account may not
download the project (not credentialed, training missing, or data use agreement not signed).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from ..errors import ConfigError
from .checksums import SUMS_FILE
from .mimic_cxr import CHEXPERT, METADATA, SPLIT

MIMIC_CXR = "mimic-cxr"
MIMIC_CXR_JPG = "mimic-cxr-jpg"
REPORTS_ZIP = "mimic-cxr-reports.zip"
JPG_TABLES = tuple(f"{name}.gz" for name in (METADATA, SPLIT, CHEXPERT))

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class PhysioNetConfig:
    """``sources.physionet``: where ``pull`` downloads from, and how hard it tries."""

    base_url: str = "https://physionet.org/files/"
    mimic_cxr_version: str = "2.0.0"
    mimic_cxr_jpg_version: str = "2.0.0"
    mimic_nle_queries: str | None = None     # folder or URL holding {train,dev,test}-query.json
    rad_restruct_archive: str | None = None  # Rad-ReStruct checkout, or .zip / .tar.gz archive (path or URL)
    concurrency: int = 4
    retries: int = 4
    retry_delay_s: float = 2.0
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        check_url(self.base_url, "sources.physionet.base_url")
        for key in ("mimic_cxr_version", "mimic_cxr_jpg_version"):
            if not _VERSION.match(str(getattr(self, key))):
                raise ConfigError(f"params: sources.physionet.{key} must be a version like 2.0.0, "
                                  f"got {getattr(self, key)!r}")
        if self.concurrency < 1 or self.retries < 0 or self.retry_delay_s < 0 or self.timeout_s <= 0:
            raise ConfigError("params: sources.physionet: concurrency >= 1, retries >= 0, retry_delay_s >= 0 "
                              "and timeout_s > 0 expected")
        for key in ("mimic_nle_queries", "rad_restruct_archive"):
            value = getattr(self, key)
            if value and is_url(value):
                check_url(value, f"sources.physionet.{key}", sends_password=False)

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def mimic_cxr(self) -> Project:
        return Project(self.base_url, MIMIC_CXR, self.mimic_cxr_version)

    def mimic_cxr_jpg(self) -> Project:
        return Project(self.base_url, MIMIC_CXR_JPG, self.mimic_cxr_jpg_version)


@dataclass(frozen=True)
class Project:
    """One version of a PhysioNet project."""

    base_url: str
    slug: str
    version: str

    def url(self, rel: str) -> str:
        return f"{self.base_url.rstrip('/')}/{self.slug}/{self.version}/{quote(rel)}"

    @property
    def sums_url(self) -> str:
        return self.url(SUMS_FILE)

    @property
    def label(self) -> str:
        return f"{self.slug} {self.version}"

    @property
    def page(self) -> str:
        """Where a user signs the data use agreement (PhysioNet's project page, else the mirror's)."""
        parts = urlsplit(self.base_url)
        if parts.hostname and parts.hostname.endswith("physionet.org"):
            return f"https://{parts.hostname}/content/{self.slug}/{self.version}/"
        return f"the page of {self.label} on {parts.hostname}"


def is_url(value: str) -> bool:
    return "://" in value


def check_url(url: str, key: str, *, sends_password: bool = True) -> None:
    """http(s) only, no credentials inside, and (where the password is sent) https unless the server
    is on this machine.

    Messages never repeat the URL: it might be the one holding a password.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"params: {key} must be an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"params: {key} must not contain a user name or password; PhysioNet credentials "
                          "come from PHYSIONET_USERNAME/PHYSIONET_PASSWORD, ~/.netrc or the prompt")
    if sends_password and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"params: {key} must use https (basic authentication over http sends the password "
                          "in clear); plain http is accepted only for a server on this machine")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
