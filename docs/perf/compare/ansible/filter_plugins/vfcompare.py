"""The filters virtfleet's templates and this playbook use that ansible-core lacks
(implemented in ../lib/vfcompare.py, shared with the pyinfra deploy)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))

import vfcompare  # noqa: E402


class FilterModule:
    def filters(self):
        return {
            "keyfile_escape": vfcompare.keyfile_escape,
            "put_address_in_context": vfcompare.put_address_in_context,
            "fleet_client_dns": vfcompare.fleet_client_dns,
            "kolla_config_merge": vfcompare.kolla_config_merge,
            "ini_merge": vfcompare.ini_merge,
        }
