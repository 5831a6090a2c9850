"""The controller half of provision.network.apply.

`network` has one meaning, provision's (docs/inventory.md): merged across the host's layers,
devices and tunnels by name, routes by key. Ansible's own variable merge replaces it whole,
so the hostvars Ansible hands a task are not what `provision plan` would read. The action
therefore asks provision itself, on the controller, for the host as it reads the inventory
(`provision inventory SOURCE --host HOST --flat`: the host's variables with `network` merged,
and what its tunnels need of their peers) and gives that to the module on the target. The
collection and the CLI then plan the same thing for the same inventory.

The target cannot see its peers' files: a tunnel_public_key_file is read here, on the
controller, where the inventory is (relative to the host's inventory_dir), and handed on as
tunnel_public_key; a peer's tunnel_private_key_file is none of the target's business and
stays behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from ansible.plugins.action import ActionBase

PROVISION_VARS = ("network", "tunnel_address", "ansible_host", "tunnel_public_key")
CONTROLLER_ONLY = ("controller_provision",)
MAX_KEY_FILE = 256


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        me = task_vars["inventory_hostname"]
        sources = [s for s in task_vars.get("ansible_inventory_sources") or () if s]
        if len(sources) != 1:
            return {**result, "failed": True,
                    "msg": f"provision.network.apply reads one inventory (a file or a directory), got {sources}"}
        binary = self._task.args.get("controller_provision") or "provision"
        if shutil.which(binary) is None:
            return {**result, "failed": True, "msg": f"{binary} is not installed on the controller: the host's "
                                                     "network is merged by provision there (docs/inventory.md)"}
        done = subprocess.run([binary, "inventory", sources[0], "--host", me, "--flat"], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            return {**result, "failed": True, "msg": done.stderr.strip() or f"{binary} exited {done.returncode}"}
        flat = json.loads(done.stdout)["all"]["hosts"]
        hostvars = task_vars.get("hostvars") or {}

        def provision_vars(name: str) -> dict[str, Any]:
            found = flat[name]
            out = {k: found[k] for k in PROVISION_VARS if k in found}
            if "tunnel_public_key" not in out and found.get("tunnel_public_key_file"):
                where = (hostvars.get(name) or {}).get("inventory_dir") or "."
                path = os.path.join(str(where), str(found["tunnel_public_key_file"]))
                with open(path, encoding="ascii") as f:
                    out["tunnel_public_key"] = f.read(MAX_KEY_FILE).strip()
            return out

        inventory = {"all": {"hosts": {name: provision_vars(name) for name in flat}}}
        if "tunnel_private_key_file" in flat.get(me, {}):
            inventory["all"]["hosts"][me]["tunnel_private_key_file"] = flat[me]["tunnel_private_key_file"]
        args = {k: v for k, v in self._task.args.items() if k not in CONTROLLER_ONLY}
        # the inventory's name in each machine's record of who made what, as the CLI names it
        # (provisioner.ownership.default_owner: its directory, or itself when it is one)
        source = os.path.abspath(sources[0])
        args.update(inventory=inventory, host=me, owner=source if os.path.isdir(source) else os.path.dirname(source))
        result.update(self._execute_module(module_name="provision.network.apply", module_args=args,
                                           task_vars=task_vars))
        return result
