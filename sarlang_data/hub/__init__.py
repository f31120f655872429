"""The Hub side: publish a dataset root (:mod:`.uploads`), download subsets (:mod:`.downloads`).

What both share (the API client, remotes, hashes, progress bars) is :mod:`.client`; byte-range
(``exact``) downloads are :mod:`.exact`.
"""

from .downloads import DownloadReport, download
from .uploads import PublishFile, PublishPlan, plan_publish, publish

__all__ = ["DownloadReport", "PublishFile", "PublishPlan", "download", "plan_publish", "publish"]
