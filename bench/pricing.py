"""What an hour of this machine costs: the EC2 instance type, read locally, and its price.

The cost column of a report (:mod:`bench.verdicts`) needs a price per hour. ``--usd-per-hour``
gives one; without it the run's EC2 instance type is read from the DMI table, which Nitro
instances fill with it (``sys_vendor`` ``Amazon EC2``, ``product_name`` e.g. ``c6i.xlarge``):
no network call, nothing to configure. Its on-demand price comes from :data:`ON_DEMAND_USD`,
a short list of the types this project deploys or suggests; a type missing from it, or any
other machine, gets no cost (and the report says why) unless the flag is given.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DMI = Path("/sys/devices/virtual/dmi/id")
EC2_VENDOR = "Amazon EC2"
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
PRICE_NOTE = "AWS on-demand Linux price in us-east-1 (bench/pricing.py; prices change)"
ON_DEMAND_USD: dict[str, float] = {
    # GPU types terraform/variables.tf allows for the services
    "g4dn.xlarge": 0.526, "g5.xlarge": 1.006, "g6.xlarge": 0.8048,
    # CPU types: the load generators' default and the usual CPU serving hosts
    "c6i.large": 0.085, "c6i.xlarge": 0.17, "c7i.large": 0.08925, "c7i.xlarge": 0.1785,
    "m6i.large": 0.096, "m7i.large": 0.1008,
}
"""USD per hour by instance type (:data:`PRICE_NOTE`)."""


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def instance_type(dmi: Path = DMI) -> str | None:
    """The EC2 instance type of this machine, or None when it is not a (Nitro) EC2 one."""
    if _read(dmi / "sys_vendor") != EC2_VENDOR:
        return None
    name = _read(dmi / "product_name")
    return name if INSTANCE_TYPE.match(name) else None


def hourly_price(usd_per_hour: float | None, detected_type: str | None) -> dict[str, Any]:
    """The price the cost column uses: the flag's, else the detected type's on-demand
    price, else none, with the reason."""
    if usd_per_hour is not None:
        return {"usd_per_hour": usd_per_hour, "source": "--usd-per-hour",
                "instance_type": detected_type, "reason": None}
    if detected_type is None:
        return {"usd_per_hour": None, "source": None, "instance_type": None,
                "reason": "the instance type of this machine is unknown (not an EC2 Nitro "
                          "instance): pass --usd-per-hour for a cost"}
    price = ON_DEMAND_USD.get(detected_type)
    if price is None:
        return {"usd_per_hour": None, "source": None, "instance_type": detected_type,
                "reason": f"no price known for {detected_type}: pass --usd-per-hour"}
    return {"usd_per_hour": price, "source": f"{detected_type}, {PRICE_NOTE}",
            "instance_type": detected_type, "reason": None}
